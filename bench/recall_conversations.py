"""Generated long conversations for the recall benchmark: seeded, two speakers, planted facts.

Each conversation is 400 exchanges (a user message and the bot's reply: 800 messages) over about
four weeks. Early on (in the first two thirds), the user mentions things once: single facts
("the wifi password at the cabin is …"), the bot's own recommendation, pairs of messages that a
question needs together (multi-hop), and events whose date a question asks for (temporal). The
filler around them is varied chat about work, code, cooking, family, sport and errands, and it
reuses the planted facts' vocabulary on purpose (the sister who sends videos, the conference
call, the library at work, the dentist's reminder), so that a word match alone is not enough.
At the end come the questions, including some whose answer was never given.
"""

from __future__ import annotations

import random
from collections.abc import Callable
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
    kind: str  # 'single-hop', 'multi-hop', 'temporal', 'no-answer'
    text: str
    evidence: tuple[Evidence, ...]


@dataclass(slots=True)
class Conversation:
    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (user, bot)
    times: list[float] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


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
