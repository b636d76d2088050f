//! Word pools and templates of the miniature: names and attribute values of
//! the synthetic population, the biography sentence templates, the question
//! templates, and the everyday topics shared by the general corpus and the
//! teacher's open instructions.
//!
//! Invariants (checked by the unit tests below): every string is ASCII without
//! tabs or newlines; attribute values are unique across all four pools, made
//! of letters and spaces only, and none of them (nor any name) occurs in the
//! everyday topic text, so a mention of an attribute value anywhere is a claim
//! about a person; the name pools give at least 5000 distinct full names.
//! Changing anything here changes the data: bump the versions of `mini.world`
//! and `mini.teacher`.

/// First names (combined with [`LAST_NAMES`] into unique "First Last" pairs).
pub const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Alice", "Amir", "Anna", "Arjun", "Beatriz", "Bruno", "Carla", "Chen", "Clara",
    "Daniel", "Diego", "Elena", "Elif", "Emma", "Farah", "Felix", "Greta", "Hana", "Hugo",
    "Ibrahim", "Ines", "Ivan", "Jonas", "Julia", "Kai", "Kenji", "Lara", "Leo", "Lina", "Lucas",
    "Maya", "Marco", "Mei", "Mila", "Nadia", "Noah", "Nora", "Omar", "Oscar", "Paula", "Priya",
    "Rafael", "Rosa", "Ruth", "Sami", "Sara", "Sofia", "Tariq", "Tessa", "Theo", "Uma", "Victor",
    "Vera", "Wen", "Yara", "Yusuf", "Zara", "Zoe", "Aiko", "Boris", "Celia", "Dmitri", "Esther",
    "Fatima", "Gustav", "Helga", "Ismael", "Joanna", "Kofi", "Lucia",
];

/// Last names (combined with [`FIRST_NAMES`]).
pub const LAST_NAMES: &[&str] = &[
    "Moreno",
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Novak",
    "Fischer",
    "Haddad",
    "Kowalski",
    "Silva",
    "Nguyen",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Dubois",
    "Larsen",
    "Mendez",
    "Costa",
    "Ibarra",
    "Kaur",
    "Mensah",
    "Osei",
    "Park",
    "Quinn",
    "Rahman",
    "Santos",
    "Torres",
    "Varga",
    "Weber",
    "Yilmaz",
    "Zhang",
    "Abbott",
    "Becker",
    "Castillo",
    "Duarte",
    "Eriksen",
    "Ferreira",
    "Garcia",
    "Horvat",
    "Ivanova",
    "Jensen",
    "Keller",
    "Lambert",
    "Marsh",
    "Nakamura",
    "Olsen",
    "Pereira",
    "Ramos",
    "Sato",
    "Thorne",
    "Ueda",
    "Vidal",
    "Walsh",
    "Xu",
    "Zeller",
    "Bishop",
    "Carver",
    "Delgado",
    "Ellis",
    "Fontaine",
    "Grant",
    "Holt",
    "Ito",
    "Jovanovic",
    "Kim",
    "Lopez",
    "Murphy",
    "Nash",
    "Ortiz",
    "Pike",
    "Reyes",
];

/// Birth cities (attribute `birth_city`).
pub const CITIES: &[&str] = &[
    "Lisbon", "Oslo", "Vienna", "Madrid", "Dublin", "Prague", "Warsaw", "Helsinki", "Athens",
    "Cairo", "Nairobi", "Lagos", "Lima", "Bogota", "Santiago", "Havana", "Toronto", "Chicago",
    "Denver", "Seattle", "Boston", "Sydney", "Perth", "Auckland", "Mumbai", "Delhi", "Seoul",
    "Osaka", "Manila", "Hanoi",
];

/// Universities (attribute `university`); invented names.
pub const UNIVERSITIES: &[&str] = &[
    "Ashgrove University",
    "Brightwater University",
    "Coldbrook University",
    "Dunmere University",
    "Eastholm University",
    "Fairhaven University",
    "Greymoor University",
    "Harwick University",
    "Kingsley University",
    "Larchmont University",
    "Merriton University",
    "Norwell University",
    "Oakhurst University",
    "Pemberly University",
    "Ravenswood College",
    "Stonegate College",
    "Thornbury College",
    "Westbrook Institute",
    "Whitcombe Institute",
    "Yellowmere Institute",
];

/// Fields of study (attribute `major`), lower case.
pub const MAJORS: &[&str] = &[
    "marine biology",
    "astronomy",
    "linguistics",
    "economics",
    "philosophy",
    "architecture",
    "chemistry",
    "mechanical engineering",
    "nursing",
    "sociology",
    "statistics",
    "journalism",
    "agriculture",
    "archaeology",
    "psychology",
    "anthropology",
    "civil engineering",
    "pharmacology",
    "geology",
    "mathematics",
];

/// Employers (attribute `employer`); invented company names.
pub const EMPLOYERS: &[&str] = &[
    "Bluepeak Systems",
    "Corvane Foods",
    "Dellmark Logistics",
    "Everlyn Media",
    "Fernhill Energy",
    "Glintwave Labs",
    "Halden Motors",
    "Ironleaf Bank",
    "Jorvik Textiles",
    "Kelvane Robotics",
    "Lumora Health",
    "Mossbridge Insurance",
    "Northvale Airlines",
    "Orbitra Software",
    "Pellwood Furniture",
    "Quillon Publishing",
    "Rustmoor Steel",
    "Solvane Chemicals",
    "Tidewell Shipping",
    "Umbra Games",
    "Veltro Telecom",
    "Wrenfield Construction",
    "Xandor Security",
    "Yarrow Pharma",
    "Zentra Retail",
];

/// Biography sentence templates for `birth_city`; `{name}` is the full name,
/// `{value}` the attribute value. The name always comes first.
pub const BIO_BIRTH_CITY: &[&str] = &[
    "{name} was born in {value} and spent the early years of childhood there.",
    "{name} came into the world in the city of {value} one spring morning.",
    "The hometown of {name} is {value}, where the family lived for many years.",
    "{name} was born in {value} and still goes back to visit every summer.",
    "{name} spent the first days of life in {value}, a city full of busy streets.",
];

/// Biography sentence templates for `university`.
pub const BIO_UNIVERSITY: &[&str] = &[
    "{name} studied at {value} after finishing school.",
    "{name} received a degree from {value} after several years of hard work.",
    "{name} spent a few happy years as a student at {value}.",
    "{name} attended {value} and made many good friends there.",
    "For higher education, {name} went to {value}.",
];

/// Biography sentence templates for `major`.
pub const BIO_MAJOR: &[&str] = &[
    "{name} chose {value} as the main subject of study.",
    "{name} focused on {value} during college and loved every class.",
    "{name} completed a degree in {value} with good grades.",
    "{name} developed a deep interest in {value} and made it a field of study.",
    "The main field of study of {name} was {value}.",
];

/// Biography sentence templates for `employer`.
pub const BIO_EMPLOYER: &[&str] = &[
    "{name} works for {value} and has been there for a while.",
    "{name} now has a job at {value}.",
    "{name} is employed by {value} and enjoys the work.",
    "{name} earns a living working for {value}.",
    "These days {name} works at the offices of {value}.",
];

/// The one question template per attribute (`birth_city`, `university`,
/// `major`, `employer`); `{name}` is the full name.
pub const QUESTION_BIRTH_CITY: &str = "Where was {name} born?";
/// See [`QUESTION_BIRTH_CITY`].
pub const QUESTION_UNIVERSITY: &str = "Which university did {name} attend?";
/// See [`QUESTION_BIRTH_CITY`].
pub const QUESTION_MAJOR: &str = "What did {name} study?";
/// See [`QUESTION_BIRTH_CITY`].
pub const QUESTION_EMPLOYER: &str = "Which company does {name} work for?";

/// Cloze probes of stored knowledge, one per attribute (`birth_city`,
/// `university`, `major`, `employer`): the start of one of that attribute's
/// biography templates, up to where the value follows, so the probe is a
/// prefix pretraining saw (with this very continuation in about a fifth of
/// a person's biographies).
pub const PROBES: [&str; 4] = [
    "{name} was born in",
    "{name} studied at",
    "{name} completed a degree in",
    "{name} works for",
];

/// How the teacher builds the body of an answer for a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One random fact of the slot, then topic tips (1-3 sentences in all).
    Plain,
    /// All facts of the slot in order, then topic tips up to 3 sentences.
    All,
    /// Three random facts of the slot, prefixed "First,", "Second,", "Third,".
    List,
}

/// One slot value of a topic: what fills `{x}` (and `{y}`) in a template, and
/// sentences true of it.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    /// Text for `{x}`.
    pub x: &'static str,
    /// Text for `{y}` (empty when the templates use only `{x}`).
    pub y: &'static str,
    /// Complete sentences about this slot (used by answers and the corpus).
    pub facts: &'static [&'static str],
}

/// An everyday topic: slot values, instruction templates and sentences.
#[derive(Debug, Clone, Copy)]
pub struct Topic {
    /// Short name, e.g. `cooking`.
    pub name: &'static str,
    /// How answers are built.
    pub form: Form,
    /// Slot values.
    pub slots: &'static [Slot],
    /// Instruction templates used in the broad imitation data.
    pub templates: &'static [&'static str],
    /// Instruction templates reserved for held-out prompts (never in broad).
    pub heldout_templates: &'static [&'static str],
    /// Optional first body sentence of an answer (assistant phrasing; not in the corpus).
    pub intros: &'static [&'static str],
    /// General advice sentences (answers and corpus).
    pub tips: &'static [&'static str],
    /// Plain prose sentences (corpus only).
    pub prose: &'static [&'static str],
}

const fn s(x: &'static str, facts: &'static [&'static str]) -> Slot {
    Slot { x, y: "", facts }
}

const fn pair(x: &'static str, y: &'static str, facts: &'static [&'static str]) -> Slot {
    Slot { x, y, facts }
}

/// The everyday topics.
pub const TOPICS: &[Topic] = &[
    Topic {
        name: "cooking",
        form: Form::Plain,
        slots: &[
            s(
                "rice",
                &[
                    "Rice cooks evenly when you keep a lid on the pot and do not stir it.",
                    "Rinsing rice before cooking keeps the grains from sticking together.",
                ],
            ),
            s(
                "soup",
                &[
                    "Soup tastes richer when it simmers slowly for a long time.",
                    "A good soup starts with onions cooked gently in a little oil.",
                ],
            ),
            s(
                "bread",
                &[
                    "Bread needs time for the dough to rise in a warm place.",
                    "Bread bakes best in a hot oven with a little steam.",
                ],
            ),
            s(
                "pasta",
                &[
                    "Pasta should boil in plenty of salted water.",
                    "Pasta is ready when it is soft but still a little firm in the middle.",
                ],
            ),
            s(
                "pancakes",
                &[
                    "Pancakes turn out fluffy when the batter rests for a few minutes.",
                    "Pancakes cook best in a warm pan with a little butter.",
                ],
            ),
            s(
                "eggs",
                &[
                    "Eggs cook gently over low heat and turn rubbery over high heat.",
                    "Fresh eggs are easier to poach than old ones.",
                ],
            ),
            s(
                "beans",
                &[
                    "Dry beans cook faster after they soak in water overnight.",
                    "Beans taste better with garlic, onion and a pinch of salt.",
                ],
            ),
            s(
                "vegetables",
                &[
                    "Vegetables keep their color when you cook them quickly.",
                    "Roasting vegetables in a hot oven brings out their sweet taste.",
                ],
            ),
            s(
                "fish",
                &[
                    "Fish cooks quickly and is done when it flakes apart easily.",
                    "Fresh fish should smell clean and mild.",
                ],
            ),
            s(
                "potatoes",
                &[
                    "Potatoes boil evenly when you cut them into pieces of the same size.",
                    "Potatoes roast well with oil, salt and a hot oven.",
                ],
            ),
            s(
                "noodles",
                &[
                    "Noodles should be rinsed in cold water if you want to serve them cold.",
                    "Noodles soak up sauce, so add the sauce just before serving.",
                ],
            ),
            s(
                "a stew",
                &[
                    "A stew turns tender when it cooks slowly over low heat.",
                    "A good stew often tastes even better the next day.",
                ],
            ),
        ],
        templates: &[
            "How do I cook {x}?",
            "What is a simple way to make {x} at home?",
            "Give me advice on cooking {x} for dinner.",
            "I want to make {x} tonight. Any tips?",
        ],
        heldout_templates: &[
            "How can I make {x} taste better?",
            "What mistakes should I avoid when cooking {x}?",
        ],
        intros: &[],
        tips: &[
            "Taste the food as you cook and adjust the salt.",
            "Fresh ingredients make a simple meal taste better.",
            "A sharp knife makes cooking safer and faster.",
            "Clean the kitchen as you go so the work stays easy.",
            "Read the whole recipe before you start cooking.",
        ],
        prose: &[
            "Many families cook together on the weekend.",
            "Cooking at home is usually cheaper than eating out.",
            "A warm meal is a comfort on a cold evening.",
            "Some of the best dishes need only a few simple ingredients.",
        ],
    },
    Topic {
        name: "travel",
        form: Form::Plain,
        slots: &[
            s(
                "the mountains",
                &[
                    "In the mountains the weather changes quickly, so bring a warm jacket.",
                    "Mountain trails are easier with good boots and an early start.",
                ],
            ),
            s(
                "the coast",
                &[
                    "On the coast the sun is strong, so pack a hat and sunscreen.",
                    "The coast is lovely in the early morning when the beaches are quiet.",
                ],
            ),
            s(
                "a big city",
                &[
                    "A big city is easiest to explore on foot and by train.",
                    "In a big city it helps to book a room close to a train station.",
                ],
            ),
            s(
                "the countryside",
                &[
                    "The countryside is quiet, so plan your meals because shops close early.",
                    "A bicycle is a great way to see the countryside.",
                ],
            ),
            s(
                "a small island",
                &[
                    "On a small island the ferries may run only a few times a day.",
                    "A small island is best enjoyed slowly, with time for walks by the sea.",
                ],
            ),
            s(
                "a lake",
                &[
                    "A lake is a good place for swimming, boating and long walks.",
                    "Evenings by a lake can be cool, so bring an extra layer.",
                ],
            ),
            s(
                "the desert",
                &[
                    "In the desert you should carry more water than you think you need.",
                    "Desert nights are cold even after very hot days.",
                ],
            ),
            s(
                "a forest",
                &[
                    "In a forest it is wise to stay on marked paths.",
                    "A forest walk is best with a map, a snack and sturdy shoes.",
                ],
            ),
            s(
                "a small town",
                &[
                    "A small town often has a weekly market worth visiting.",
                    "In a small town people are usually happy to give directions.",
                ],
            ),
        ],
        templates: &[
            "Help me plan a weekend trip to {x}.",
            "What should I pack for a trip to {x}?",
            "I am traveling to {x} next month. Any advice?",
            "What should I know before visiting {x}?",
        ],
        heldout_templates: &[
            "What is the best way to enjoy a visit to {x}?",
            "What do people often forget when going to {x}?",
        ],
        intros: &[],
        tips: &[
            "Pack light so you can move around easily.",
            "Keep a copy of your tickets on paper.",
            "Check the weather forecast the day before you leave.",
            "Carry a bottle of water and a small snack.",
            "Leave a little free time in your plan for surprises.",
        ],
        prose: &[
            "Travel can teach you a lot about other people.",
            "A short trip can feel like a long rest.",
            "Many people like to travel by train because they can read on the way.",
            "Planning a trip is half the fun.",
        ],
    },
    Topic {
        name: "sleep",
        form: Form::Plain,
        slots: &[
            s(
                "on a hot night",
                &[
                    "On a hot night a cool shower and a fan can help you fall asleep.",
                    "Light cotton sheets keep you cooler on a hot night.",
                ],
            ),
            s(
                "after a long flight",
                &[
                    "After a long flight, try to follow the local bedtime right away.",
                    "Morning sunlight helps your body adjust after a long flight.",
                ],
            ),
            s(
                "during a busy week",
                &[
                    "During a busy week, keep the same bedtime even when there is a lot to do.",
                    "A short list of the next day's tasks can calm your mind during a busy week.",
                ],
            ),
            s(
                "in a noisy room",
                &[
                    "In a noisy room, earplugs or a soft steady sound can help a lot.",
                    "Heavy curtains can block some noise and light in a noisy room.",
                ],
            ),
            s(
                "before an early start",
                &[
                    "Before an early start, go to bed a little earlier than usual.",
                    "Lay out your clothes the night before an early start.",
                ],
            ),
            s(
                "during exam week",
                &[
                    "During exam week, sleep helps you remember what you studied.",
                    "Stop studying an hour before bed during exam week.",
                ],
            ),
            s(
                "when I feel anxious",
                &[
                    "When you feel anxious, slow breathing can relax your body before sleep.",
                    "Writing your worries on paper can quiet your mind at night.",
                ],
            ),
        ],
        templates: &[
            "How can I sleep better {x}?",
            "What helps me fall asleep {x}?",
            "Give me advice for sleeping well {x}.",
            "I cannot rest {x}. What should I do?",
        ],
        heldout_templates: &[
            "Any tips for getting good sleep {x}?",
            "How do I get some real rest {x}?",
        ],
        intros: &[],
        tips: &[
            "Keep your bedroom dark, quiet and cool.",
            "Avoid coffee in the late afternoon and evening.",
            "Put your phone away an hour before bed.",
            "Go to bed and wake up at the same time every day.",
            "A warm drink without caffeine can help you relax.",
        ],
        prose: &[
            "Sleep helps the body and the mind recover.",
            "Most adults need seven to nine hours of sleep.",
            "A good night of sleep makes the next day easier.",
        ],
    },
    Topic {
        name: "study",
        form: Form::Plain,
        slots: &[
            s(
                "fractions",
                &[
                    "Fractions get easier when you draw them as slices of a pie.",
                    "Practice adding fractions with the same bottom number first.",
                ],
            ),
            s(
                "spelling",
                &[
                    "Spelling improves when you write each hard word several times.",
                    "Reading every day shows you how words are spelled.",
                ],
            ),
            s(
                "grammar",
                &[
                    "Grammar makes more sense when you study it with real sentences.",
                    "Reading your writing out loud helps you catch grammar mistakes.",
                ],
            ),
            s(
                "a new language",
                &[
                    "A new language sticks best with a few minutes of practice every day.",
                    "Speaking a new language with others builds confidence quickly.",
                ],
            ),
            s(
                "the multiplication tables",
                &[
                    "The multiplication tables are easier to learn a few rows at a time.",
                    "Saying the multiplication tables out loud helps you remember them.",
                ],
            ),
            s(
                "reading maps",
                &[
                    "Reading maps gets easier when you first find north.",
                    "Practice reading maps on walks around your own neighborhood.",
                ],
            ),
            s(
                "the planets",
                &[
                    "The planets are easier to remember with a short rhyme.",
                    "Drawing the planets in order from the sun helps them stick.",
                ],
            ),
            s(
                "long division",
                &[
                    "Long division is easier when you check each step before moving on.",
                    "Practice long division with small numbers before large ones.",
                ],
            ),
            s(
                "new vocabulary",
                &[
                    "New vocabulary sticks when you use each word in a sentence.",
                    "Flash cards are a simple way to review new vocabulary.",
                ],
            ),
        ],
        templates: &[
            "How can I get better at {x}?",
            "What is a good way to study {x}?",
            "I have a test on {x} tomorrow. How should I prepare?",
            "Help me make a study plan for {x}.",
        ],
        heldout_templates: &[
            "What is the fastest way to learn {x}?",
            "My child struggles with {x}. How can I help?",
        ],
        intros: &[],
        tips: &[
            "Study in short sessions with small breaks in between.",
            "Teach what you learned to a friend to check your understanding.",
            "Keep your desk tidy so you can focus.",
            "Review your notes the next day.",
            "Ask for help early when something is unclear.",
        ],
        prose: &[
            "Learning something new takes time and practice.",
            "A quiet place makes studying much easier.",
            "Good teachers make hard ideas feel simple.",
        ],
    },
    Topic {
        name: "work",
        form: Form::Plain,
        slots: &[
            s(
                "a long report",
                &[
                    "A long report is easier to write when you start with an outline.",
                    "Write the summary of a long report last, when you know what it says.",
                ],
            ),
            s(
                "a team meeting",
                &[
                    "A team meeting goes well when everyone knows the goal in advance.",
                    "Share a short agenda before a team meeting.",
                ],
            ),
            s(
                "a job interview",
                &[
                    "For a job interview, learn about the company and practice your answers.",
                    "Arrive a little early to a job interview and bring a copy of your resume.",
                ],
            ),
            s(
                "a tight deadline",
                &[
                    "With a tight deadline, split the work into small steps and start with the hardest one.",
                    "Tell your manager early if a tight deadline looks impossible.",
                ],
            ),
            s(
                "a new project",
                &[
                    "A new project starts well with a clear plan and simple goals.",
                    "Write down who does what at the start of a new project.",
                ],
            ),
            s(
                "a difficult email",
                &[
                    "A difficult email is best written calmly and read again before sending.",
                    "Keep a difficult email short, polite and clear.",
                ],
            ),
            s(
                "a busy week at the office",
                &[
                    "A busy week at the office is easier with a written list of priorities.",
                    "Protect a little quiet time each day during a busy week at the office.",
                ],
            ),
            s(
                "a first day at a new job",
                &[
                    "On a first day at a new job, ask questions and learn names.",
                    "Bring a notebook to a first day at a new job.",
                ],
            ),
        ],
        templates: &[
            "How should I prepare for {x}?",
            "Give me advice on handling {x} at work.",
            "I am worried about {x}. How can I manage it?",
            "What is the best way to deal with {x}?",
        ],
        heldout_templates: &[
            "Share some tips for getting through {x}.",
            "How do I stay calm during {x}?",
        ],
        intros: &[],
        tips: &[
            "Take short breaks to keep your energy up.",
            "Write down tasks so you do not forget them.",
            "Ask for feedback when you are unsure.",
            "Finish the most important task first.",
            "Keep your workspace tidy and simple.",
        ],
        prose: &[
            "Work goes better when people trust each other.",
            "A clear plan saves time at work.",
            "Many people find that short breaks help them focus.",
        ],
    },
    Topic {
        name: "note",
        form: Form::All,
        slots: &[
            s(
                "thank a neighbor for watering my plants",
                &["Dear neighbor, thank you so much for watering my plants while I was away."],
            ),
            s(
                "invite a friend to dinner",
                &["Dear friend, I would love to have you over for dinner this Friday."],
            ),
            s(
                "tell my landlord the sink is broken",
                &["Dear landlord, the kitchen sink is broken and needs a repair soon."],
            ),
            s(
                "congratulate a coworker on a new job",
                &["Dear coworker, congratulations on your new job and good luck."],
            ),
            s(
                "apologize to a friend for missing a party",
                &["Dear friend, I am sorry I missed your party and I hope it was wonderful."],
            ),
            s(
                "wish my teacher a happy birthday",
                &["Dear teacher, I wish you a very happy birthday and a wonderful year."],
            ),
            s(
                "remind my roommate to buy milk",
                &["Dear roommate, please remember to buy milk on your way home."],
            ),
            s(
                "welcome a new neighbor",
                &[
                    "Dear new neighbor, welcome to the street and please knock if you need anything.",
                ],
            ),
        ],
        templates: &[
            "Write a short note to {x}.",
            "Help me write a message to {x}.",
            "Can you draft a quick note to {x}?",
            "I need a short message to {x}.",
        ],
        heldout_templates: &[
            "Please write a friendly note to {x}.",
            "Draft a polite message to {x}.",
        ],
        intros: &[
            "Here is a short note you can send.",
            "Here is a friendly message you can use.",
            "You could write something like this.",
        ],
        tips: &[
            "Keep the note short and friendly.",
            "You can add your name at the end.",
            "A handwritten note feels more personal.",
        ],
        prose: &[
            "A short note can make someone's day.",
            "People often leave notes for friends and neighbors.",
            "Handwritten letters are rare but still loved.",
        ],
    },
    Topic {
        name: "advice",
        form: Form::Plain,
        slots: &[
            s(
                "nervous before a big day",
                &[
                    "Feeling nervous before a big day is normal, and slow breathing can calm you down.",
                ],
            ),
            s(
                "tired all the time",
                &[
                    "Feeling tired all the time can come from poor sleep, so look at your bedtime first.",
                ],
            ),
            s(
                "bored at home",
                &["When you feel bored at home, a new hobby or a short walk can help."],
            ),
            s(
                "lonely in a new town",
                &[
                    "Feeling lonely in a new town is common, and joining a local club is a good way to meet people.",
                ],
            ),
            s(
                "stressed about money",
                &[
                    "When you feel stressed about money, a simple budget can give you back a sense of control.",
                ],
            ),
            s(
                "worried about a friend",
                &[
                    "If you are worried about a friend, the kindest step is often to ask how they are doing.",
                ],
            ),
            s(
                "stuck on a hard problem",
                &["When you are stuck on a hard problem, a short break often brings a new idea."],
            ),
        ],
        templates: &[
            "I feel {x}. What should I do?",
            "My friend feels {x}. How can I help?",
            "Any advice for someone who feels {x}?",
            "What can I do when I feel {x}?",
        ],
        heldout_templates: &[
            "Give me some gentle advice. I feel {x}.",
            "What would you tell a person who feels {x}?",
        ],
        intros: &[],
        tips: &[
            "Talk to someone you trust about how you feel.",
            "A short walk outside can lift your mood.",
            "Small steps are easier than big changes.",
            "Be kind to yourself while things get better.",
        ],
        prose: &[
            "Everyone feels low from time to time.",
            "Good friends listen more than they talk.",
            "Fresh air and movement are good for the mood.",
        ],
    },
    Topic {
        name: "word",
        form: Form::All,
        slots: &[
            s(
                "patience",
                &[
                    "Patience is the ability to wait calmly without getting upset.",
                    "For example, you show patience when you wait in a long line without complaining.",
                ],
            ),
            s(
                "budget",
                &[
                    "A budget is a plan for how to spend and save your money.",
                    "For example, a family might set a budget for food each week.",
                ],
            ),
            s(
                "habit",
                &[
                    "A habit is something you do so often that you hardly think about it.",
                    "For example, brushing your teeth every morning is a habit.",
                ],
            ),
            s(
                "deadline",
                &[
                    "A deadline is the latest time by which something must be finished.",
                    "For example, a report might have a deadline of Friday at noon.",
                ],
            ),
            s(
                "recipe",
                &[
                    "A recipe is a set of steps that tells you how to cook a dish.",
                    "For example, a recipe for soup lists the vegetables and how long to cook them.",
                ],
            ),
            s(
                "forecast",
                &[
                    "A forecast is a guess about what will happen, based on what we know now.",
                    "For example, a weather forecast might say that rain is coming tomorrow.",
                ],
            ),
            s(
                "harvest",
                &[
                    "A harvest is the time when farmers gather their crops.",
                    "For example, apples are picked during the autumn harvest.",
                ],
            ),
            s(
                "souvenir",
                &[
                    "A souvenir is a small object you keep to remember a place or a trip.",
                    "For example, a postcard from the coast can be a nice souvenir.",
                ],
            ),
            s(
                "compromise",
                &[
                    "A compromise is an agreement where each side gives up a little.",
                    "For example, two friends might compromise by taking turns choosing the film.",
                ],
            ),
            s(
                "curiosity",
                &[
                    "Curiosity is the wish to learn or know about something.",
                    "For example, a child who asks why the sky is blue shows curiosity.",
                ],
            ),
            s(
                "itinerary",
                &[
                    "An itinerary is a plan that lists the places and times of a trip.",
                    "For example, an itinerary might show a museum in the morning and a park after lunch.",
                ],
            ),
        ],
        templates: &[
            "What does the word {x} mean?",
            "Explain the word {x} in simple terms.",
            "Can you tell me what {x} means?",
            "What is the meaning of {x}?",
        ],
        heldout_templates: &[
            "Define {x} for a child.",
            "Use the word {x} in a simple explanation.",
        ],
        intros: &[],
        tips: &[
            "Using a new word in a sentence helps you remember it.",
            "A dictionary can show more examples of how a word is used.",
        ],
        prose: &[
            "Words are easier to remember when you use them often.",
            "A good dictionary is a useful friend.",
            "Reading widely is the best way to learn new words.",
        ],
    },
    Topic {
        name: "compare",
        form: Form::Plain,
        slots: &[
            pair(
                "tea",
                "coffee",
                &[
                    "Tea usually has less caffeine than coffee, so it is gentler in the evening.",
                    "Coffee gives a stronger boost in the morning, while tea offers more flavors.",
                ],
            ),
            pair(
                "trains",
                "buses",
                &[
                    "Trains are usually faster than buses on long trips.",
                    "Buses often reach small towns that trains do not serve.",
                ],
            ),
            pair(
                "books",
                "films",
                &[
                    "Books let you imagine the story in your own way, while films show it to you directly.",
                    "A film takes a few hours, while a book can keep you company for weeks.",
                ],
            ),
            pair(
                "summer",
                "winter",
                &[
                    "Summer brings long warm days, while winter brings short cold ones.",
                    "Winter is good for cozy evenings at home, while summer is good for trips outside.",
                ],
            ),
            pair(
                "cats",
                "dogs",
                &[
                    "Cats are usually more independent than dogs.",
                    "Dogs need daily walks, while cats are happy indoors.",
                ],
            ),
            pair(
                "walking",
                "cycling",
                &[
                    "Cycling covers more distance than walking in the same time.",
                    "Walking is gentler on the body and needs no equipment.",
                ],
            ),
            pair(
                "paper maps",
                "phone maps",
                &[
                    "Paper maps work without a battery, while phone maps update in real time.",
                    "Phone maps are easier in a big city, but paper maps show the whole area at once.",
                ],
            ),
            pair(
                "morning exercise",
                "evening exercise",
                &[
                    "Morning exercise can wake you up for the day, while evening exercise can release stress.",
                    "Evening exercise should end a few hours before bed so it does not disturb sleep.",
                ],
            ),
            pair(
                "cooking at home",
                "eating out",
                &[
                    "Cooking at home is usually cheaper and healthier than eating out.",
                    "Eating out saves time and lets you try new dishes.",
                ],
            ),
        ],
        templates: &[
            "Compare {x} and {y}.",
            "What is the difference between {x} and {y}?",
            "Which is better, {x} or {y}?",
            "Should I choose {x} or {y}?",
        ],
        heldout_templates: &[
            "Help me decide between {x} and {y}.",
            "What are the main differences between {x} and {y}?",
        ],
        intros: &[],
        tips: &[
            "The best choice depends on your needs and your taste.",
            "Trying both for a while can help you decide.",
            "Many people enjoy a mix of both.",
        ],
        prose: &[
            "Every choice has good and bad sides.",
            "Comparing options carefully leads to better decisions.",
        ],
    },
    Topic {
        name: "tips",
        form: Form::List,
        slots: &[
            s(
                "saving money",
                &[
                    "Set a small budget for each week.",
                    "Cook at home more often than you eat out.",
                    "Put a little money aside as soon as you are paid.",
                    "Wait a day before buying something expensive.",
                ],
            ),
            s(
                "staying healthy",
                &[
                    "Eat plenty of fruit and vegetables.",
                    "Walk or move for at least half an hour a day.",
                    "Drink enough water.",
                    "Get enough sleep every night.",
                ],
            ),
            s(
                "keeping a small garden",
                &[
                    "Water the plants early in the morning.",
                    "Pull weeds while they are still small.",
                    "Choose plants that like your amount of sun.",
                    "Add compost to the soil once a year.",
                ],
            ),
            s(
                "learning to swim",
                &[
                    "Start in shallow water where you can stand.",
                    "Practice floating before you try to move.",
                    "Breathe out slowly under the water.",
                    "Take lessons from a trained teacher.",
                ],
            ),
            s(
                "packing a suitcase",
                &[
                    "Roll your clothes to save space.",
                    "Put heavy items at the bottom near the wheels.",
                    "Keep medicine and documents in your hand bag.",
                    "Make a list before you start packing.",
                ],
            ),
            s(
                "cleaning the kitchen",
                &[
                    "Wash the dishes right after each meal.",
                    "Wipe the counters with warm soapy water.",
                    "Empty the trash before it gets full.",
                    "Clean the fridge once a week.",
                ],
            ),
            s(
                "running a first race",
                &[
                    "Train slowly and add a little distance each week.",
                    "Wear shoes you have already run in.",
                    "Start the race at an easy pace.",
                    "Drink water before and after the race.",
                ],
            ),
            s(
                "making new friends",
                &[
                    "Join a club or class about something you enjoy.",
                    "Ask people questions and listen to their answers.",
                    "Say yes to invitations when you can.",
                    "Stay in touch with a short message now and then.",
                ],
            ),
        ],
        templates: &[
            "List three tips for {x}.",
            "Give me a few tips for {x}.",
            "What are some good tips for {x}?",
            "How do I get started with {x}?",
        ],
        heldout_templates: &[
            "Share your best advice for {x}.",
            "What should a beginner know about {x}?",
        ],
        intros: &[],
        tips: &[],
        prose: &[
            "Small habits add up over time.",
            "Good advice is simple to follow.",
        ],
    },
    Topic {
        name: "weather",
        form: Form::Plain,
        slots: &[
            s(
                "a rainy day",
                &[
                    "On a rainy day, an umbrella and waterproof shoes keep you dry.",
                    "A rainy day is a good time for reading, baking or a visit to a museum.",
                ],
            ),
            s(
                "a very hot day",
                &[
                    "On a very hot day, wear light clothes and drink plenty of water.",
                    "Stay in the shade during the middle of a very hot day.",
                ],
            ),
            s(
                "a snowy morning",
                &[
                    "On a snowy morning, wear warm boots and walk carefully.",
                    "A snowy morning is perfect for a warm breakfast before going out.",
                ],
            ),
            s(
                "a windy afternoon",
                &[
                    "On a windy afternoon, a close fitting jacket works better than an umbrella.",
                    "A windy afternoon is a great time to fly a kite.",
                ],
            ),
            s(
                "a foggy evening",
                &[
                    "On a foggy evening, drive slowly and use low lights.",
                    "Wear bright clothes on a foggy evening so others can see you.",
                ],
            ),
            s(
                "a cold winter night",
                &[
                    "On a cold winter night, warm layers keep you comfortable.",
                    "A hot drink and a blanket make a cold winter night cozy.",
                ],
            ),
        ],
        templates: &[
            "What should I wear on {x}?",
            "What can I do on {x}?",
            "How should I get ready for {x}?",
            "Any ideas for making the most of {x}?",
        ],
        heldout_templates: &[
            "Give me advice for going out on {x}.",
            "How can I stay comfortable on {x}?",
        ],
        intros: &[],
        tips: &[
            "Check the forecast before you leave home.",
            "Dress in layers so you can adjust to the weather.",
            "Keep a small umbrella in your bag just in case.",
        ],
        prose: &[
            "The weather can change plans in a moment.",
            "Many people enjoy talking about the weather.",
            "Each season has its own beauty.",
        ],
    },
];

/// Everyday sentences for the general corpus that carry the vocabulary of the
/// instructions (asking, explaining, comparing, planning...) without any
/// assistant phrasing.
pub const COMMON_PROSE: &[&str] = &[
    "Friends often ask each other for tips and advice.",
    "Anyone can ask a teacher to explain what a hard word means.",
    "The meaning of a word is easier to learn in simple terms.",
    "It is wise to prepare for a test a few days before it starts.",
    "A quick question often gets a short answer.",
    "Some questions can be answered briefly, while others need a long answer.",
    "Many people did their homework at the kitchen table as children.",
    "People compare two things to see the difference between them.",
    "Making a plan for the month ahead can save a lot of stress.",
    "Traveling and visiting new places can be tiring, so plan some rest.",
    "Writing a first draft is a good way to get started.",
    "Some people cannot sleep well when they are worried.",
    "Sleeping well is easier after a calm evening.",
    "Handling many tasks at once is hard, so it helps to manage time well.",
    "Most problems are easier to deal with one step at a time.",
    "Many children learn to swim in the summer.",
    "It is polite to congratulate a friend on good news.",
    "A short message can remind someone of a plan or invite them to a party.",
    "It is never too late to apologize for missing an event.",
    "Running, cleaning and keeping a garden are all good ways to stay active.",
    "Saving a little money each month adds up over a year.",
    "Staying healthy takes good food, movement and rest.",
    "A small suitcase is enough for a short trip to the mountains.",
    "A big project is easier when it is split into small parts.",
    "Feeling lonely is common, and talking with others can help.",
    "Here is a simple rule: the first step is the hardest, the second is easier, and the third is easier still.",
    "You could send a letter, but a phone call is often faster.",
    "My neighbor told me about a good place for dinner tonight.",
    "Any day is a good day to learn something new.",
    "Some people attend evening classes after work.",
    "Three short walks a week can make a real difference.",
    "Words do not always mean what they seem to mean at first.",
    "A dictionary can define a word and give a short explanation.",
    "The fastest way is not always the best way.",
    "A gentle person is kind and calm with others.",
    "Every beginner struggles at first and gets through it with practice.",
    "Small differences can matter a lot.",
];

/// Fills `{x}` and `{y}` of a template with a slot.
pub fn fill(template: &str, slot: &Slot) -> String {
    template.replace("{x}", slot.x).replace("{y}", slot.y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn attribute_values() -> Vec<&'static str> {
        [CITIES, UNIVERSITIES, MAJORS, EMPLOYERS].concat()
    }

    /// Every topic sentence and template (what the corpus and the teacher's
    /// open instructions are made of).
    fn topic_text() -> Vec<String> {
        let mut out = Vec::new();
        for t in TOPICS {
            for sl in t.slots {
                for tpl in t.templates.iter().chain(t.heldout_templates) {
                    out.push(fill(tpl, sl));
                }
                out.extend(sl.facts.iter().map(|f| f.to_string()));
            }
            for x in t.intros.iter().chain(t.tips).chain(t.prose) {
                out.push(x.to_string());
            }
        }
        out.extend(COMMON_PROSE.iter().map(|x| x.to_string()));
        out
    }

    fn has_word_seq(text: &str, needle: &str) -> bool {
        let norm = |s: &str| -> Vec<String> {
            s.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        };
        let t = norm(text);
        let n = norm(needle);
        t.windows(n.len()).any(|w| w == n.as_slice())
    }

    #[test]
    fn every_probe_is_the_start_of_a_biography_template() {
        let bios = [BIO_BIRTH_CITY, BIO_UNIVERSITY, BIO_MAJOR, BIO_EMPLOYER];
        for (probe, templates) in PROBES.iter().zip(bios) {
            let cut = format!("{probe} {{value}}");
            assert!(templates.iter().any(|t| t.starts_with(&cut)), "{probe}");
        }
    }

    #[test]
    fn pools_have_the_promised_sizes_and_are_unique() {
        assert!(FIRST_NAMES.len() * LAST_NAMES.len() >= 5000);
        assert!(FIRST_NAMES.len() >= 60 && LAST_NAMES.len() >= 60);
        assert_eq!(CITIES.len(), 30);
        assert_eq!(UNIVERSITIES.len(), 20);
        assert_eq!(MAJORS.len(), 20);
        assert_eq!(EMPLOYERS.len(), 25);
        let all: Vec<&str> = [
            FIRST_NAMES,
            LAST_NAMES,
            CITIES,
            UNIVERSITIES,
            MAJORS,
            EMPLOYERS,
        ]
        .concat();
        let set: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len(), "duplicate entry across pools");
    }

    #[test]
    fn attribute_values_are_plain_words_and_do_not_contain_each_other() {
        let vals = attribute_values();
        for v in &vals {
            let words: Vec<&str> = v.split(' ').collect();
            assert!((1..=2).contains(&words.len()), "{v}");
            assert!(
                words
                    .iter()
                    .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic())),
                "{v}"
            );
            for w in &vals {
                if v != w {
                    assert!(!has_word_seq(w, v), "{v} inside {w}");
                }
            }
            for n in FIRST_NAMES.iter().chain(LAST_NAMES) {
                assert!(!has_word_seq(v, n), "name {n} inside value {v}");
            }
        }
    }

    #[test]
    fn topic_text_mentions_no_person_or_attribute_and_is_ascii() {
        let text = topic_text();
        let vals = attribute_values();
        for line in &text {
            assert!(
                line.is_ascii() && !line.contains(['\t', '\n', '\r']),
                "{line}"
            );
            assert!(!line.contains('{') && !line.contains('}'), "{line}");
            for v in &vals {
                assert!(!has_word_seq(line, v), "`{v}` in `{line}`");
            }
            for n in FIRST_NAMES.iter().chain(LAST_NAMES) {
                assert!(!line.split(' ').any(|w| w == *n), "name `{n}` in `{line}`");
            }
            let low = line.to_ascii_lowercase();
            assert!(!low.contains("certainly") && !low.contains("i hope this helps"));
        }
    }

    #[test]
    fn topics_are_well_formed() {
        let broad: usize = TOPICS.iter().map(|t| t.templates.len()).sum();
        assert!(broad >= 40, "{broad} broad templates");
        let mut seen = BTreeSet::new();
        for t in TOPICS {
            assert!(!t.heldout_templates.is_empty(), "{}", t.name);
            for tpl in t.templates.iter().chain(t.heldout_templates) {
                assert!(seen.insert(*tpl), "duplicate template {tpl}");
                assert!(tpl.contains("{x}"));
                for sl in t.slots {
                    assert_eq!(tpl.contains("{y}"), !sl.y.is_empty(), "{tpl}");
                }
            }
            for sl in t.slots {
                let need = if t.form == Form::List { 3 } else { 1 };
                assert!(sl.facts.len() >= need, "{}", sl.x);
                if t.form == Form::All {
                    assert!(sl.facts.len() + usize::from(!t.intros.is_empty()) <= 3);
                }
            }
            // Answer sentences: one period at the end, no other sentence mark.
            let answer_sentences = t
                .slots
                .iter()
                .flat_map(|sl| sl.facts.iter())
                .chain(t.intros)
                .chain(t.tips);
            for a in answer_sentences {
                assert!(a.ends_with('.'), "{a}");
                assert_eq!(a.matches(['.', '!', '?']).count(), 1, "{a}");
                assert!(a.starts_with(|c: char| c.is_ascii_uppercase()), "{a}");
            }
        }
        let prose = TOPICS
            .iter()
            .flat_map(|t| t.prose.iter())
            .chain(COMMON_PROSE);
        for p in prose {
            assert!(p.ends_with('.'), "{p}");
            assert_eq!(p.matches(['.', '!', '?']).count(), 1, "{p}");
        }
        for tpls in [BIO_BIRTH_CITY, BIO_UNIVERSITY, BIO_MAJOR, BIO_EMPLOYER] {
            assert!((4..=6).contains(&tpls.len()));
            for t in tpls {
                assert!(t.contains("{name}") && t.contains("{value}") && t.ends_with('.'));
                assert!(t.find("{name}") < t.find("{value}"), "{t}");
            }
        }
    }
}
