"""Generated long conversations for the recall benchmark: seeded, two speakers, planted facts.

Each conversation is 400 exchanges (a user message and the bot's reply: 800 messages) over about
four weeks. Early on (in the first two thirds), the user mentions things once: single facts
("the wifi password at the cabin is …"), the bot's own recommendation, pairs of messages that a
question needs together (multi-hop), and events whose date a question asks for (temporal). The
filler around them is varied chat about work, code, cooking, family, sport and errands, and it
reuses the planted facts' vocabulary on purpose (the sister who sends videos, the conference
call, the library at work, the dentist's reminder), so that a word match alone is not enough.
At the end come the questions, including some whose answer was never given.

Then the harder questions (`plant_harder`, below): paraphrases, multi-hop two weeks apart, a
period named as a user would, what came before an event, and the answer in a two-line exchange,
each made to break a word match; laid over filler with their own random generator, so the
items and questions above are exactly as they were.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

EXCHANGES = 400
PLANT_BEFORE = 260  # planted items sit in the first 65 % of the exchanges
START_TIME = 1_788_220_800.0  # 2026-09-01 00:00 UTC

NAMES = [
    "Marta",
    "Tomasz",
    "Ingrid",
    "Kofi",
    "Aiko",
    "Rahul",
    "Lucía",
    "Henrik",
    "Chioma",
    "Mateo",
    "Yara",
    "Olek",
    "Priya",
    "Sven",
    "Noor",
    "Dario",
    "Agnes",
    "Bilal",
    "Freya",
    "Joaquim",
    "Leila",
    "Rune",
    "Sunita",
    "Tariq",
]
SURNAMES = [
    "Kowalczyk",
    "Haraldsen",
    "Okafor",
    "Brennan",
    "Vasquez",
    "Lindqvist",
    "Moreau",
    "Takahashi",
    "Novak",
    "Mensah",
    "Ferreira",
    "Aaltonen",
    "Dvořák",
    "Castellanos",
    "Whitcombe",
    "Szabó",
]
CITIES = [
    "Lisbon",
    "Porto",
    "Gdańsk",
    "Tallinn",
    "Valencia",
    "Bergen",
    "Kraków",
    "Ljubljana",
    "Utrecht",
    "Bologna",
    "Cork",
    "Graz",
    "Tampere",
    "Brno",
    "Lyon",
    "Seville",
    "Aarhus",
    "Trieste",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
]
PETS = [
    "Biscuit",
    "Pepper",
    "Miso",
    "Juniper",
    "Pickle",
    "Tofu",
    "Maple",
    "Clementine",
    "Nugget",
    "Olive",
]
MEDICINES = ["Carprofen", "Metacam", "Apoquel", "Galliprant", "Rimadyl", "Cytopoint"]
BRANDS = ["Flexispot", "Fully", "Ergotron", "Uplift", "Autonomous", "Oakworks"]
WORDS = ["bluefinch42", "otterlake7", "quietpine88", "mossyrock19", "cedarwind5", "northstar63"]
TASKS = (
    ("parsing PDF invoices", "pdfplumber"),
    ("scheduling background jobs", "APScheduler"),
    ("validating JSON payloads", "pydantic"),
    ("plotting interactive charts", "plotly"),
    ("reading Excel sheets", "openpyxl"),
    ("scraping web pages", "BeautifulSoup"),
    ("fuzzy string matching", "rapidfuzz"),
    ("working with dates and time zones", "pendulum"),
)
RESTAURANTS = ["Casa Amélia", "Le Petit Jardin", "Osteria Lupo", "Sakura Tei", "The Copper Kettle"]
CONFERENCES = ["PyCon Nordics", "DataFest", "DevSummit", "CloudConf", "FOSS Days"]
COMPANIES = ["Brightwave", "Northwind Labs", "Helix Foods", "Quarry Systems", "Tidepool"]
FOODS = ["chicken", "salmon", "wheat", "beef", "dairy"]
RACES = ["Riverside", "Harbour", "Autumn Hills", "Old Town", "Lakeside"]
INSTRUMENTS = ["cello", "violin", "piano", "saxophone", "ukulele", "drum"]
STREETS = ["Rua das Flores", "Maple Lane", "Kings Road", "Via Roma", "Elm Street"]
TEETH = ["upper left", "lower right", "upper right", "lower left"]


@dataclass(frozen=True, slots=True)
class Evidence:
    exchange: int  # which exchange holds it
    role: str  # 'user' or 'assistant'
    key: str  # the words the answer needs, as they were written


@dataclass(frozen=True, slots=True)
class Question:
    kind: str  # one of BASE_KINDS or HARD_KINDS, or 'no-answer'
    text: str
    evidence: tuple[Evidence, ...]


@dataclass(slots=True)
class Conversation:
    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (user, bot)
    times: list[float] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    planted: set[int] = field(default_factory=set)
    """The exchanges that hold planted items (the others are filler)."""


def question_time(conversation: Conversation, number: int) -> float:
    """When question `number` (from 0) is asked: an hour after the last exchange, then every
    two minutes (benchmark 9 stores each question, then a canned reply)."""
    return conversation.times[-1] + 3600.0 + 120.0 * (number + 1)


def generate(seed: int) -> Conversation:
    rng = random.Random(seed)
    conversation = Conversation()
    planted: dict[int, tuple[str, str]] = {}
    slots = iter(rng.sample(range(4, PLANT_BEFORE), 40))

    def plant(user: str, bot: str) -> int:
        index = next(slots)
        planted[index] = (user, bot)
        return index

    def plant_pair(first: tuple[str, str], second: tuple[str, str]) -> tuple[int, int]:
        a = next(slots)
        b = next(slots)
        a, b = sorted((a, b))
        if b - a < 20:  # the two halves of a multi-hop question are far apart
            b = min(a + 20 + rng.randint(0, 60), EXCHANGES - 60)
            while b in planted or b == a:
                b += 1
        planted[a], planted[b] = first, second
        return a, b

    for make in rng.sample(SINGLE_HOP, 5):
        make(rng, plant, conversation.questions)
    for make in rng.sample(MULTI_HOP, 2):
        make(rng, plant_pair, conversation.questions)
    for make in rng.sample(TEMPORAL, 2):
        make(rng, plant, conversation.questions)
    for text in rng.sample(NO_ANSWER, 2):
        conversation.questions.append(
            Question("no-answer", text.format(city=_pick(rng, CITIES)), ())
        )

    now = START_TIME
    for index in range(EXCHANGES):
        now += rng.choice((4, 9, 15, 30, 45, 60, 90, 120, 180, 300, 600)) * 60.0
        conversation.times.append(now)
        conversation.exchanges.append(planted.get(index) or _filler(rng))
    conversation.planted = set(planted)
    plant_harder(conversation, random.Random(f"mnemo-harder-{seed}"))
    return conversation


def _pick(rng: random.Random, pool: tuple[str, ...] | list[str]) -> str:
    return rng.choice(list(pool))


# -- planted items: each appends its question and plants its message(s) --------------------

Plant = Callable[[str, str], int]
PlantPair = Callable[[tuple[str, str], tuple[str, str]], tuple[int, int]]


def _sister(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    name, city, month = _pick(rng, NAMES), _pick(rng, CITIES), _pick(rng, MONTHS)
    at = plant(
        f"Big news in the family: my sister {name} is moving to {city} in {month}.",
        "That's big news! Moving abroad is a lot of work, I hope the packing goes smoothly.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(("Where is my sister moving to?", "Which city is my sister relocating to?")),
            (Evidence(at, "user", city),),
        )
    )


def _vet(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    pet, medicine = _pick(rng, PETS), _pick(rng, MEDICINES)
    at = plant(
        f"The vet says {pet} has to take {medicine} tablets twice a day for two weeks.",
        f"Poor {pet}. Hiding tablets in a bit of cheese usually works with stubborn pets.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(
                (f"Which tablets did the vet prescribe for {pet}?", f"What medicine is {pet} on?")
            ),
            (Evidence(at, "user", medicine),),
        )
    )


def _locker(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    code = f"{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}"
    at = plant(
        f"Note to self: the combination for my locker at the swimming pool is {code}.",
        "Noted. Swimming twice a week is a great habit to keep.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(
                (
                    "What is the combination of my locker at the pool?",
                    "What's the code for my pool locker?",
                )
            ),
            (Evidence(at, "user", code),),
        )
    )


def _desk(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    brand = _pick(rng, BRANDS)
    at = plant(
        f"I finally ordered the {brand} standing desk for the study, arrives in ten days.",
        "Nice! Remember to alternate between sitting and standing rather than standing all day.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(
                ("Which brand of standing desk did I order?", "Which desk did I buy for the study?")
            ),
            (Evidence(at, "user", brand),),
        )
    )


def _wifi(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    word = _pick(rng, WORDS)
    at = plant(
        f"The wifi password at the cabin is {word}, in case I forget it again.",
        "Got it. Cabins with decent wifi are rare, lucky you.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(
                ("What's the wifi password at the cabin?", "How do I get online at the cabin?")
            ),
            (Evidence(at, "user", word),),
        )
    )


def _landlord(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    first, surname = _pick(rng, NAMES), _pick(rng, SURNAMES)
    at = plant(
        f"Met my new landlord today, {first} {surname}. Seems friendly enough.",
        "A friendly landlord makes a big difference. Keep a copy of every email about repairs.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(("What is my new landlord's name?", "Who is our landlord again?")),
            (Evidence(at, "user", surname),),
        )
    )


def _library(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    task, library = rng.choice(TASKS)
    at = plant(
        f"Can you recommend a Python library for {task}? Nothing too heavy.",
        f"For {task} I would go with {library}: it is well maintained, small, and the"
        " documentation has good examples. Start with the quickstart page.",
    )
    questions.append(
        Question(
            "single-hop",
            f"Which Python library did you recommend for {task}?",
            (Evidence(at, "assistant", library),),
        )
    )


def _restaurant(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    place = _pick(rng, RESTAURANTS)
    at = plant(
        f"Booked our anniversary dinner at {place} for Friday at eight.",
        "Lovely, happy anniversary in advance! Maybe order dessert to share.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(
                (
                    "Which restaurant did I book for our anniversary?",
                    "Where are we going for the anniversary?",
                )
            ),
            (Evidence(at, "user", place),),
        )
    )


def _plumber(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    price = str(rng.randint(9, 38) * 100 + 50)
    at = plant(
        f"The plumber quoted {price} euros to replace the boiler, installation included.",
        "It's worth getting a second quote for a job that size before you decide.",
    )
    questions.append(
        Question(
            "single-hop",
            rng.choice(
                (
                    "How much did the plumber quote for the boiler?",
                    "What would a new boiler cost us?",
                )
            ),
            (Evidence(at, "user", price),),
        )
    )


SINGLE_HOP = (_sister, _vet, _locker, _desk, _wifi, _landlord, _library, _restaurant, _plumber)


def _talk(rng: random.Random, plant_pair: PlantPair, questions: list[Question]) -> None:
    manager, conference, city = _pick(rng, NAMES), _pick(rng, CONFERENCES), _pick(rng, CITIES)
    a, b = plant_pair(
        (
            f"My manager {manager} asked me to give a talk at {conference} this autumn.",
            "What an opportunity! Pick one story you know well and build the talk around it.",
        ),
        (
            f"Looked it up: the {conference} conference is in {city} this year.",
            "Worth booking the train or flight early, prices climb fast around conferences.",
        ),
    )
    questions.append(
        Question(
            "multi-hop",
            f"In which city is the conference where {manager} asked me to give a talk?",
            (Evidence(a, "user", conference), Evidence(b, "user", city)),
        )
    )


def _kitten(rng: random.Random, plant_pair: PlantPair, questions: list[Question]) -> None:
    pet, food = _pick(rng, PETS), _pick(rng, FOODS)
    a, b = plant_pair(
        (
            f"We adopted a kitten from the shelter and called her {pet}!",
            "Congratulations! Kittens sleep a lot at first, give her a quiet corner.",
        ),
        (
            f"Turns out {pet} is allergic to {food}, so the vet put her on a special diet.",
            "Good that you found out early; a special diet usually sorts it out in a few weeks.",
        ),
    )
    questions.append(
        Question(
            "multi-hop",
            "What is the kitten we adopted allergic to?",
            (Evidence(a, "user", pet), Evidence(b, "user", food)),
        )
    )


def _brother(rng: random.Random, plant_pair: PlantPair, questions: list[Question]) -> None:
    name, company, city = _pick(rng, NAMES), _pick(rng, COMPANIES), _pick(rng, CITIES)
    a, b = plant_pair(
        (
            f"My brother {name} just got a job at {company}, he starts next month.",
            "Good for him! The first weeks in a new job are always a blur.",
        ),
        (
            f"Read in the news that {company} is opening a new office in {city} next spring.",
            "Sounds like they are growing quickly.",
        ),
    )
    questions.append(
        Question(
            "multi-hop",
            "Where is my brother's new company opening an office?",
            (Evidence(a, "user", company), Evidence(b, "user", city)),
        )
    )


def _race(rng: random.Random, plant_pair: PlantPair, questions: list[Question]) -> None:
    race, coach, km = _pick(rng, RACES), _pick(rng, NAMES), str(rng.randint(14, 21))
    a, b = plant_pair(
        (
            f"Signed up for the {race} half marathon, my first one! Coach {coach} will help me.",
            "Exciting! Build up slowly and keep most runs easy.",
        ),
        (
            f"{coach} wants me to run {km} kilometres every Sunday from now on.",
            "That's a solid long run. Take the pace easy and eat something before you go.",
        ),
    )
    questions.append(
        Question(
            "multi-hop",
            f"How far does my coach want me to run on Sundays for the {race} race?",
            (Evidence(a, "user", coach), Evidence(b, "user", km)),
        )
    )


MULTI_HOP = (_talk, _kitten, _brother, _race)


def _lesson(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    instrument = _pick(rng, INSTRUMENTS)
    at = plant(
        f"Had my first {instrument} lesson today, my fingers hurt but it was fun.",
        "The first lessons are the hardest. Ten minutes of practice a day adds up.",
    )
    questions.append(
        Question(
            "temporal",
            f"When did I have my first {instrument} lesson?",
            (Evidence(at, "user", instrument),),
        )
    )


def _dentist(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    tooth = _pick(rng, TEETH)
    at = plant(
        f"Just got back from the dentist, they finally fixed my {tooth} molar.",
        "Glad it's done. Avoid very hot drinks for the rest of the day.",
    )
    questions.append(
        Question(
            "temporal",
            "When did I go to the dentist to get my molar fixed?",
            (Evidence(at, "user", tooth),),
        )
    )


def _lease(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    street = _pick(rng, STREETS)
    at = plant(
        f"We signed the lease for the flat on {street} this afternoon!",
        "Congratulations on the new place! Take photos of every room before you move in.",
    )
    questions.append(
        Question(
            "temporal", "When did we sign the lease for the flat?", (Evidence(at, "user", street),)
        )
    )


def _driving(rng: random.Random, plant: Plant, questions: list[Question]) -> None:
    attempt = _pick(rng, ("second", "third", "fourth"))
    at = plant(
        f"Passed my driving test this morning, on the {attempt} attempt!",
        "Well done! Persistence pays off.",
    )
    questions.append(
        Question("temporal", "When did I pass my driving test?", (Evidence(at, "user", attempt),))
    )


TEMPORAL = (_lesson, _dentist, _lease, _driving)

NO_ANSWER = (
    "What is my cousin's favourite band?",
    "Which airline did I book for the trip to {city}?",
    "What did my doctor say about my knee?",
    "How much did I pay for the new bike?",
    "What is the name of my daughter's school?",
)

# -- filler: varied chat that shares the planted items' words ------------------------------

_FILLER_USER = (
    "My sister keeps sending me videos of her dog doing tricks, it's very sweet.",
    "Called my sister this evening, we talked for an hour about nothing in particular.",
    "I need to find a good library at work for {task2}, but there's no rush.",
    "Went to the public library to return two overdue books, paid the fine.",
    "Changed my email password again after that phishing scare at work.",
    "The conference call with the {team} team ran an hour over, again.",
    "Our neighbour's cat got into the garden and dug up the herbs.",
    "My brother called, he's thinking about moving somewhere warmer.",
    "Went for a short run along the river, my knees are complaining a bit.",
    "The dentist's office sent another reminder email about my check-up.",
    "I'm thinking about learning the {instrument2} one day, when I have time.",
    "The lease on my car runs out next year, no idea what to do after.",
    "Work was busy today, three meetings back to back about the {project} rollout.",
    "Tried a new recipe tonight: {dish}. Turned out better than expected.",
    "It's been raining in {city2} all week, I miss the sun.",
    "Reading {book} at the moment, slow start but it's getting better.",
    "Spent the afternoon fixing a flaky test in the {project} repository.",
    "Does anyone actually enjoy doing taxes? Asking for myself.",
    "We watched a documentary about {city2} last night, now I want to visit.",
    "The vet clinic near us is closing, which is a pity.",
    "My manager wants the quarterly report by Thursday, so that's my week.",
    "Booked a table for lunch with colleagues, nothing fancy.",
    "I keep forgetting to water the plants on the balcony.",
    "Our team is hiring again, I have to review a dozen CVs.",
    "The train was cancelled so I worked from home today.",
    "Bought new running shoes, the old ones had holes in them.",
    "Is it normal for a boiler to make a clicking noise at night?",
    "The landlord still hasn't fixed the light in the hallway.",
    "Our anniversary is coming up and I have no gift ideas yet.",
    "The cabin photos from last summer turned up in my phone's memories.",
    "My sister is thinking about a new job, she asked me to read her CV.",
    "Got a new desk lamp for the study, much better light.",
    "Finished the puzzle with 1000 pieces, took us two weeks.",
    "My friend {name2} recommended a podcast about history, quite good so far.",
    "I'm trying to drink less coffee, day three and I have a headache.",
    "We're planning a weekend trip, maybe somewhere near the coast.",
    "How do I politely decline a meeting that has no agenda?",
    "The new intern asked how to set up a Python virtual environment.",
    "Had a long walk in the park, the leaves are turning already.",
    "My code review got 40 comments, some of them useful.",
    "Our shower drain is blocked again, I'll try baking soda first.",
    "Can you explain the difference between a list and a tuple in Python?",
    "The kids' school is organising a bake sale on Saturday.",
    "I signed up for a pottery class, first session is next week.",
    "Thinking of repainting the study in a lighter colour.",
)
_FILLER_MORE = (
    "Anyway, how was your day?",
    "Not sure what to think about it.",
    "Any tips?",
    "I'll tell you how it goes.",
    "It's a small thing but it made my day.",
    "Honestly I'm a bit tired of it.",
    "We'll see.",
    "At least the weather was nice.",
    "Probably overthinking it.",
    "Let me know if you have ideas.",
)
_FILLER_BOT = (
    "That sounds {adj}. {advice}",
    "I understand. {advice} {question}",
    "{advice}",
    "Good to hear from you. {question}",
    "Oh, that's {adj}! {advice} {question}",
)
_ADVICE = (
    "Breaking it into small steps usually helps.",
    "A short walk often clears the head better than another coffee.",
    "Writing it down tonight will make tomorrow easier.",
    "It might help to ask someone who has done it before.",
    "Try to keep the evening free for something you enjoy.",
    "Setting a reminder on your phone can take that off your mind.",
    "If it keeps bothering you, it's worth raising it directly.",
    "A checklist is boring but it saves a lot of time.",
    "Give it a week and see whether it still feels the same.",
    "Sometimes the simplest option is the right one.",
)
_QUESTIONS = (
    "How are you feeling about it?",
    "What would you like to do next?",
    "Have you tried anything so far?",
    "Is there a deadline?",
    "Do you want me to help plan it?",
)
_ADJECTIVES = [
    "great",
    "frustrating",
    "fun",
    "tiring",
    "interesting",
    "annoying",
    "lovely",
    "stressful",
]
_SLOTS = {
    "task2": [task for task, _ in TASKS],
    "team": ["design", "sales", "platform", "finance", "support"],
    "instrument2": list(INSTRUMENTS),
    "project": ["billing", "search", "onboarding", "mobile", "reporting"],
    "dish": ["lentil curry", "shakshuka", "mushroom risotto", "fish tacos", "ramen"],
    "city2": list(CITIES),
    "book": ["a novel about a lighthouse", "a biography of Ada Lovelace", "a sci-fi trilogy"],
    "name2": list(NAMES),
}


def _filler(rng: random.Random) -> tuple[str, str]:
    text = rng.choice(_FILLER_USER).format(**{k: rng.choice(v) for k, v in _SLOTS.items()})
    if rng.random() < 0.5:
        text += " " + rng.choice(_FILLER_MORE)
    reply = rng.choice(_FILLER_BOT).format(
        adj=rng.choice(_ADJECTIVES), advice=rng.choice(_ADVICE), question=rng.choice(_QUESTIONS)
    )
    if rng.random() < 0.4:
        reply += " " + rng.choice(_ADVICE)
    return text, reply


# -- the harder questions ------------------------------------------------------------------
#
# Laid over the conversation above, with their own random generator (so the planted items,
# questions and times above stay exactly as they were): planted items replace filler exchanges,
# and their questions come after the ones above. Each kind is meant to break a word match:
#
# * paraphrase: the question shares no content word (or one drowned in filler, "sister") with
#   the message that answers it ("Where's my sister's wedding going to be?" for "My little
#   sister is tying the knot in June, at a vineyard outside Porto!");
# * multi-hop-far: two messages two weeks or more apart, the second sharing nothing with the
#   question ("Which airline is my cousin going to fly for?": "My cousin Noor is training to be
#   a pilot" early, "Noor passed her final exams, she starts at Bluebird Air in May" late);
# * period: what happened at a time the question names as a user would ("last week", "two
#   weeks ago", "in early September", from the real dates), with a hint that shares no word;
# * before-event: what the user did before an event they mentioned ("before my trip"): the
#   event's message shares a word with the question, the answer's message none;
# * exchange: the answer is the user's short reply to the bot's question ("Yes, the blue one.")
#   in the next exchange: the bot's question holds the topic, the reply the answer.
#
# Distractor filler (the user's car, a colleague's wedding, the dog barking in the street, …)
# uses the questions' words, so that a word match finds the wrong messages.

BASE_KINDS = ("single-hop", "multi-hop", "temporal")
HARD_KINDS = ("paraphrase", "multi-hop-far", "period", "before-event", "exchange")
DAY = 86400.0
HARD_BEFORE = 330  # every harder item sits before this exchange (far outside the window)

WOMEN = ["Marta", "Ingrid", "Aiko", "Lucía", "Chioma", "Yara", "Priya", "Noor", "Agnes", "Leila"]
NEW_COMPANIES = ["Larkspur Analytics", "Ferrobyte", "Olive Grove Software", "Meridian Freight"]
ALLERGENS = ["peanuts", "shellfish", "sesame", "kiwi", "hazelnuts"]
FILMS = ["Salt and Ember", "Northern Quiet", "A Year of Small Things", "The Glass Orchard"]
PILLS = ["lisinopril", "amlodipine", "losartan", "ramipril"]
NEIGHBOUR_DOGS = ["Rolo", "Bramble", "Ziggy", "Waffles"]
OUR_DOGS = ["Pancake", "Biscotti", "Marmite", "Noodle"]
AIRLINES = ["Bluebird Air", "Nordwind", "Aurora Jet", "Skylark"]
SPORTS = ["bouldering", "padel", "fencing", "kayaking", "archery"]
BANDS = ["Neon Orchard", "The Quiet Foxes", "Paper Lanterns", "Velvet Harbour"]
VENUES = ["Roundhouse", "Corn Exchange", "old tram depot", "Palladium"]
TREATS = ["a record player", "an espresso machine", "a drone", "an e-reader"]
CRAFTS = ["sushi-making", "bread-baking", "woodcarving", "watercolour"]
WEEKDAYS = ["Friday", "Saturday"]


@dataclass(slots=True)
class _Overlay:
    conversation: Conversation
    rng: random.Random
    free: list[int]

    def take(self, low: int, high: int) -> int:
        """A free filler exchange in [low, high)."""
        choices = [i for i in self.free if low <= i < high]
        if not choices:
            raise ValueError(f"no free exchange in [{low}, {high})")
        index = self.rng.choice(choices)
        self.free.remove(index)
        return index

    def take_pair(self, low: int, high: int) -> int:
        """Two consecutive free exchanges in [low, high): the first's index."""
        choices = [i for i in self.free if low <= i < high - 1 and i + 1 in self.free]
        index = self.rng.choice(choices)
        self.free.remove(index)
        self.free.remove(index + 1)
        return index

    def take_near(self, when: float, high: int) -> int:
        """The free exchange before `high` said closest to `when`."""
        times = self.conversation.times
        index = min((i for i in self.free if i < high), key=lambda i: abs(times[i] - when))
        self.free.remove(index)
        return index

    def put(self, index: int, user: str, bot: str) -> None:
        self.conversation.exchanges[index] = (user, bot)
        self.conversation.planted.add(index)

    def ask(self, kind: str, text: str, *evidence: Evidence) -> None:
        self.conversation.questions.append(Question(kind, text, evidence))

    def pick(self, pool: Sequence[str]) -> str:
        return self.rng.choice(list(pool))


def plant_harder(conversation: Conversation, rng: random.Random) -> None:
    """Plant the harder items over filler exchanges and append their questions."""
    free = [i for i in range(4, HARD_BEFORE) if i not in conversation.planted]
    overlay = _Overlay(conversation, rng, free)
    for make in rng.sample(PARAPHRASE, 4):
        make(overlay)
    for make in rng.sample(FAR_MULTI_HOP, 2):
        make(overlay)
    for make, days in zip(rng.sample(PERIOD, 3), rng.sample((7, 13, 20, 30), 3), strict=True):
        make(overlay, days)
    rng.choice(BEFORE_EVENT)(overlay)
    for make in rng.sample(EXCHANGE, 3):
        make(overlay)
    for _ in range(14):
        index = overlay.take(4, EXCHANGES - 20)
        overlay.conversation.exchanges[index] = (rng.choice(_DISTRACTORS), _reply(rng))


def _reply(rng: random.Random) -> str:
    return rng.choice(_FILLER_BOT).format(
        adj=rng.choice(_ADJECTIVES), advice=rng.choice(_ADVICE), question=rng.choice(_QUESTIONS)
    )


# paraphrase: one message, the question in other words ----------------------------------------


def _wedding(o: _Overlay) -> None:
    city, month = o.pick(CITIES), o.pick(MONTHS)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"My little sister is tying the knot in {month}, at a vineyard outside {city}!",
        "How wonderful! Vineyard weddings are gorgeous, I hope the weather plays along.",
    )
    o.ask("paraphrase", "Where's my sister's wedding going to be?", Evidence(at, "user", city))


def _mechanic(o: _Overlay) -> None:
    price = str(o.rng.randint(3, 14) * 50 + 20)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"The mechanic says the Corolla needs new brake pads and a timing belt: {price} euros.",
        "Ouch. Brakes aren't something to put off, though.",
    )
    o.ask("paraphrase", "How much is fixing my car going to cost?", Evidence(at, "user", price))


def _allergy(o: _Overlay) -> None:
    allergen = o.pick(ALLERGENS)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"The allergist confirmed it: no more {allergen} for me, ever.",
        "That's a big change, but at least you know now. Labels will become your hobby.",
    )
    o.ask(
        "paraphrase", "Which food do I have to stay away from now?", Evidence(at, "user", allergen)
    )


def _notice(o: _Overlay) -> None:
    company, month = o.pick(NEW_COMPANIES), o.pick(MONTHS)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"Handed in my notice today! I'm joining {company} as a data engineer in {month}.",
        "Congratulations on the move! Leaving on good terms is worth the effort.",
    )
    o.ask("paraphrase", "Where will I be employed next?", Evidence(at, "user", company))


def _holidays(o: _Overlay) -> None:
    city = o.pick(CITIES)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"We finally settled on {city} for the summer holidays, flights booked for August.",
        "Great choice, August there should be warm. Book the nice restaurants early.",
    )
    o.ask("paraphrase", "Where are we going on vacation this year?", Evidence(at, "user", city))


def _film(o: _Overlay) -> None:
    film = o.pick(FILMS)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"Best film I've seen this year: {film}. I cried twice.",
        "It's lovely when a story gets to you like that.",
    )
    o.ask("paraphrase", "Which movie moved me to tears?", Evidence(at, "user", film))


def _pills(o: _Overlay) -> None:
    pill = o.pick(PILLS)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"My GP put me on {pill} for my blood pressure, one tablet every morning.",
        "Good that it's being looked after. A morning routine makes it easy to remember.",
    )
    o.ask("paraphrase", "What medication did the doctor prescribe me?", Evidence(at, "user", pill))


def _neighbours_dog(o: _Overlay) -> None:
    dog = o.pick(NEIGHBOUR_DOGS)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"Our neighbours' new puppy is called {dog}, she chewed through my shoelace.",
        "Puppies chew everything at that age. Keep your shoes out of reach!",
    )
    o.ask("paraphrase", "What's the name of the dog next door?", Evidence(at, "user", dog))


def _grandma(o: _Overlay) -> None:
    city = o.pick(CITIES)
    at = o.take(4, HARD_BEFORE)
    o.put(
        at,
        f"Finally booked the flights to see grandma in {city} over Christmas.",
        "She'll be so happy. Christmas flights fill up, good that it's done.",
    )
    o.ask("paraphrase", "Which city does my grandmother live in?", Evidence(at, "user", city))


PARAPHRASE = (
    _wedding,
    _mechanic,
    _allergy,
    _notice,
    _holidays,
    _film,
    _pills,
    _neighbours_dog,
    _grandma,
)


# multi-hop-far: two messages two weeks or more apart -------------------------------------------


def _far_pair(o: _Overlay) -> tuple[int, int]:
    """An early exchange, and one at least two weeks later."""
    times = o.conversation.times
    first = o.take(4, 80)
    later = next(i for i in range(first, HARD_BEFORE) if times[i] - times[first] >= 14 * DAY)
    return first, o.take(later, HARD_BEFORE)


def _pilot(o: _Overlay) -> None:
    name, airline, month = o.pick(WOMEN), o.pick(AIRLINES), o.pick(MONTHS)
    a, b = _far_pair(o)
    o.put(
        a,
        f"My cousin {name} is training to be a pilot, she's halfway through the course.",
        "That's a demanding course. She must be very focused.",
    )
    o.put(
        b,
        f"{name} passed her final exams! She starts flying for {airline} in {month}.",
        "Brilliant news, please pass on my congratulations!",
    )
    o.ask(
        "multi-hop-far",
        "Which airline is my cousin going to work for?",
        Evidence(a, "user", name),
        Evidence(b, "user", airline),
    )


def _mentor(o: _Overlay) -> None:
    name, month = o.pick(WOMEN), o.pick(MONTHS)
    a, b = _far_pair(o)
    o.put(
        a,
        f"My mentor at work, {name}, has been with the company for twenty years.",
        "Twenty years! Someone like that is worth learning from.",
    )
    o.put(
        b,
        f"{name} announced she's retiring at the end of {month}.",
        "End of an era. A card signed by the whole team would be a nice gesture.",
    )
    o.ask(
        "multi-hop-far",
        "When is my mentor leaving?",
        Evidence(a, "user", name),
        Evidence(b, "user", month),
    )


def _lent_bike(o: _Overlay) -> None:
    name = o.pick(NAMES)
    a, b = _far_pair(o)
    o.put(
        a,
        f"I lent my road bike to {name} from the running club for a few weeks.",
        "That's kind of you. Maybe agree on when you want it back.",
    )
    o.put(
        b,
        f"{name} crashed into a bollard, the front wheel is completely bent.",
        "Oh no! At least a wheel can be replaced. Is everyone alright?",
    )
    o.ask(
        "multi-hop-far",
        "What happened to the bicycle I gave someone to borrow?",
        Evidence(a, "user", name),
        Evidence(b, "user", "front wheel"),
    )


def _twins(o: _Overlay) -> None:
    name, month = o.pick(WOMEN), o.pick(MONTHS)
    a, b = _far_pair(o)
    o.put(
        a,
        f"My best friend {name} moved to Canada last year, I miss her a lot.",
        "Long-distance friendships take effort, but the good ones last.",
    )
    o.put(
        b,
        f"{name} just told me she's expecting twins in {month}!",
        "Twins! That's double the joy, and double the laundry.",
    )
    o.ask(
        "multi-hop-far",
        "When is my closest mate's baby due?",
        Evidence(a, "user", name),
        Evidence(b, "user", month),
    )


FAR_MULTI_HOP = (_pilot, _mentor, _lent_bike, _twins)


# period: what happened at a named time -------------------------------------------------------


def when_phrase(rng: random.Random, said: float, asked: float) -> str:
    """How a user names the time of something said at `said`, asking at `asked` (UTC): from
    the distance in days, or the part of the month, whichever comes to mind."""
    from datetime import UTC, datetime

    days = (asked - said) / DAY
    date = datetime.fromtimestamp(said, tz=UTC)
    month = date.strftime("%B")
    options = []
    if 2 <= days < 6:
        options.append("a few days ago")
    if 6 <= days < 10:
        options.append("last week")
        if date.weekday() >= 5:
            options.append("last weekend")
    if 10 <= days < 18:
        options += ["two weeks ago", "a couple of weeks ago"]
    if 18 <= days < 25:
        options.append("three weeks ago")
    if 25 <= days < 40:
        options.append("about a month ago")
    if date.day <= 10:
        options += [f"at the start of {month}", f"in early {month}"]
    elif date.day <= 20:
        options.append(f"in mid-{month}")
    else:
        options.append(f"towards the end of {month}")
    return rng.choice(options)


def _period_item(o: _Overlay, days: int, user: str, bot: str, question: str, key: str) -> None:
    """An item said about `days` before its question is asked, the question naming when."""
    asked = question_time(o.conversation, len(o.conversation.questions))
    at = o.take_near(asked - days * DAY, HARD_BEFORE)
    o.put(at, user, bot)
    when = when_phrase(o.rng, o.conversation.times[at], asked)
    o.ask("period", question.format(when=when), Evidence(at, "user", key))


def _sport(o: _Overlay, days: int) -> None:
    sport, name = o.pick(SPORTS), o.pick(NAMES)
    _period_item(
        o,
        days,
        f"Tried {sport} for the first time today with {name} from work, my arms are jelly.",
        "Sounds like a proper workout! Your arms will thank you in a couple of days.",
        "Which new sport did I take up {when}?",
        sport,
    )


def _concert(o: _Overlay, days: int) -> None:
    band, venue = o.pick(BANDS), o.pick(VENUES)
    _period_item(
        o,
        days,
        f"Saw {band} live at the {venue} tonight, my ears are still ringing.",
        "Live music is the best. Earplugs next time, maybe!",
        "Which band did I go and see {when}?",
        band,
    )


def _treat(o: _Overlay, days: int) -> None:
    treat = o.pick(TREATS)
    _period_item(
        o,
        days,
        f"Treated myself to {treat} after payday, no regrets.",
        "You deserve it. Enjoy!",
        "What did I splash out on {when}?",
        treat.split(" ", 1)[1],
    )


def _aunt(o: _Overlay, days: int) -> None:
    name = o.pick(WOMEN)
    _period_item(
        o,
        days,
        f"My aunt {name} stayed with us for the weekend, she brought homemade jam.",
        "Homemade jam is the best kind of guest gift.",
        "Which relative came to visit {when}?",
        name,
    )


def _workshop(o: _Overlay, days: int) -> None:
    craft = o.pick(CRAFTS)
    _period_item(
        o,
        days,
        f"Spent the evening at a {craft} workshop at the community centre, surprisingly fun.",
        "What a nice way to spend an evening. Will you go again?",
        "What kind of class did I go to {when}?",
        craft,
    )


PERIOD = (_sport, _concert, _treat, _aunt, _workshop)


# before-event: what the user did before an event they mentioned -----------------------------


def _before(o: _Overlay, event: tuple[str, str], before: tuple[str, str], q: str, key: str) -> None:
    anchor = o.take(40, HARD_BEFORE)
    earlier = [i for i in o.free if anchor - 12 <= i <= anchor - 3]
    at = o.rng.choice(earlier)
    o.free.remove(at)
    o.put(anchor, *event)
    o.put(at, *before)
    o.ask("before-event", q, Evidence(at, "user", key))


def _trip(o: _Overlay) -> None:
    city = o.pick(CITIES)
    _before(
        o,
        (
            f"Off to {city} tomorrow morning, the trip is finally happening!",
            "Have a wonderful time! Don't forget your charger.",
        ),
        (
            "Picked up my renewed passport from the town hall, just in time.",
            "Phew, that was close. Keep it somewhere safe.",
        ),
        "What paperwork did I have to sort out before my trip?",
        "passport",
    )


def _move(o: _Overlay) -> None:
    _before(
        o,
        (
            "The big move is on Saturday, the van is booked for eight.",
            "Exciting! Label the boxes by room, it saves hours at the other end.",
        ),
        (
            "Cancelled the broadband and sent the meter readings to the energy company.",
            "Good thinking, that's the boring part done.",
        ),
        "What admin did I get done before we moved house?",
        "broadband",
    )


def _surgery(o: _Overlay) -> None:
    _before(
        o,
        (
            "My knee operation is on Thursday, I'm a bit nervous about it.",
            "That's understandable. It's a routine procedure, and you'll be in good hands.",
        ),
        (
            "The hospital says no food after midnight and to bring my scans along.",
            "Good to have clear instructions. Maybe set an alarm for the last snack!",
        ),
        "What was I told to do before my surgery?",
        "midnight",
    )


BEFORE_EVENT = (_trip, _move, _surgery)


# exchange: the user's short answer to the bot's question -------------------------------------


def _exchange(
    o: _Overlay, first: tuple[str, str], answer: str, question: str, keys: tuple[str, str]
) -> None:
    at = o.take_pair(4, HARD_BEFORE)
    o.put(at, *first)
    o.put(at + 1, answer, "Sounds good!")
    o.ask(
        "exchange", question, Evidence(at, "assistant", keys[0]), Evidence(at + 1, "user", keys[1])
    )


def _sofa(o: _Overlay) -> None:
    blue = o.rng.random() < 0.5
    _exchange(
        o,
        (
            "Went sofa shopping after work: it's between a blue velvet one and a grey linen one.",
            "Velvet is cosy but harder to keep clean. Are you going for the velvet sofa, then?",
        ),
        "Yes, the blue one. It arrives next Thursday."
        if blue
        else "No, the grey one after all, it's easier with the cat.",
        "Which couch did I end up buying?",
        ("velvet sofa", "blue" if blue else "grey"),
    )


def _salary(o: _Overlay) -> None:
    company, salary = o.pick(NEW_COMPANIES), f"{o.rng.randint(42, 75)}k"
    _exchange(
        o,
        (
            f"Had my second interview at {company} this afternoon.",
            f"Fingers crossed! Did {company} say what the salary would be?",
        ),
        f"{salary} a year, plus a bonus in the spring.",
        f"How much would the {company} job pay me?",
        (company, salary),
    )


def _puppy_name(o: _Overlay) -> None:
    dog = o.pick(OUR_DOGS)
    _exchange(
        o,
        (
            "We're picking up the puppy from the breeder on Saturday!",
            "How exciting! Have you chosen a name for the puppy yet?",
        ),
        f"{dog}! The kids voted for it.",
        "What did we call our new dog?",
        ("name for the puppy", dog),
    )


def _paint(o: _Overlay) -> None:
    colour = o.pick(("green", "pink"))
    _exchange(
        o,
        (
            "Got two paint samples for the bedroom, sage green and dusty pink.",
            "Both are calming. Have you picked one for the bedroom yet?",
        ),
        f"Yes, the {colour} one. Painting starts tomorrow.",
        "What colour are we doing the bedroom in?",
        ("bedroom", colour),
    )


def _party(o: _Overlay) -> None:
    day = o.pick(WEEKDAYS)
    _exchange(
        o,
        (
            "Booked the back room of the pub for my birthday drinks.",
            "Nice! Is it on the Friday or the Saturday?",
        ),
        f"The {day}, from seven until late.",
        "When are my birthday drinks?",
        ("Friday or the Saturday", f"The {day}"),
    )


EXCHANGE = (_sofa, _salary, _puppy_name, _paint, _party)

_DISTRACTORS = (
    "My colleague's wedding is next month and I still need a suit.",
    "The car needs washing, it's covered in pollen.",
    "We ordered food from the new Thai place, far too spicy for me.",
    "I've been employed here for three years now, time flies.",
    "Saw a trailer for a new movie about space pirates, looks silly.",
    "The doctor's surgery changed its opening hours again.",
    "A dog barked all night on our street.",
    "My grandmother sent a postcard from her cruise.",
    "The airline lost a colleague's suitcase on the way back from a conference.",
    "Need to pump the tyres on my bicycle before the weekend.",
    "Work started a mentor programme for the juniors.",
    "Our old couch is sagging in the middle, it's time for a new one.",
    "Salary reviews at work are next week, fingers crossed.",
    "I can never decide what colour to paint the hallway.",
    "A relative of our neighbour is staying next door for a while.",
    "The sport centre near us is closed for repairs.",
    "There's a jazz concert in the park on Sunday.",
    "The yoga class was cancelled again tonight.",
    "A work trip to the head office is planned for November.",
    "The paperwork for the car insurance is a nightmare.",
    "How much does it cost to fix a dripping tap?",
    "The pay slip this month had a weird deduction on it.",
    "My birthday is still months away but my mum is already planning.",
    "Vacation days at work have to be used by December.",
    "Bought some medication for my hay fever at the pharmacy.",
    "The baby next door cries every night at three.",
    "Which band was it that played at the festival last summer?",
    "My mate from school is visiting in the spring.",
)
