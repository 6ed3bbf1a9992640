"""The fact world's schema as data: entity kinds, relations, and every phrasing used to state or ask a fact.

Phrasings are split in two: ``questions`` are used in training and in the main evaluation split (recall of trained
facts), ``heldout_questions`` never appear in training and form the paraphrase split.
"""

from __future__ import annotations

SYLLABLES = [
    "ba", "bel", "cor", "da", "dor", "el", "fen", "gal", "har", "is", "jor", "ka", "kel", "lin", "lor", "ma",
    "mir", "nal", "nor", "o", "pel", "quin", "ra", "ril", "sa", "sel", "tam", "tor", "u", "val", "ven", "wen",
    "xan", "yor", "za", "zel", "bri", "cas", "dre", "fal", "gor", "hol", "ith", "lan", "mor", "nes", "pra", "rus",
]
CITY_SUFFIXES = ["ford", "holm", "port", "mere", "stead", "burg", "wick", "dale"]
COUNTRY_SUFFIXES = ["ia", "land", "ora", "istan"]
COMPANY_SUFFIXES = ["Works", "Labs", "Group", "Foundry", "Systems", "Mills"]
PROFESSIONS = [
    "baker", "pilot", "farmer", "nurse", "painter", "lawyer", "chemist", "sailor", "teacher", "architect",
    "carpenter", "librarian", "surgeon", "poet", "engineer", "jeweler", "astronomer", "tailor", "potter", "judge",
]
YEARS = (1900, 1999)

# Relations of a person. `o` is the object's surface form; `aliases` are added by the generator.
PERSON_RELATIONS: dict[str, dict] = {
    "birthplace": {
        "statements": ["{s} was born in {o}.", "{s} is a native of {o}.", "The birthplace of {s} is {o}."],
        "questions": ["Where was {s} born?", "In which city was {s} born?"],
        "heldout_questions": ["What city does {s} come from originally?", "Name the town of birth of {s}."],
        "mcq_question": "In which city was {s} born?",
    },
    "birth_year": {
        "statements": ["{s} was born in the year {o}.", "{s} was born in {o}.", "The birth year of {s} is {o}."],
        "questions": ["In which year was {s} born?", "When was {s} born?"],
        "heldout_questions": ["What year saw the birth of {s}?", "Give the year {s} came into the world."],
        "mcq_question": "In which year was {s} born?",
    },
    "profession": {
        "statements": ["{s} works as a {o}.", "{s} is a {o} by profession.", "The profession of {s} is {o}."],
        "questions": ["What is the profession of {s}?", "What does {s} do for a living?"],
        "heldout_questions": ["Which job does {s} hold?", "Tell me the occupation of {s}."],
        "mcq_question": "What is the profession of {s}?",
    },
    "employer": {
        "statements": ["{s} works for {o}.", "{s} is employed by {o}.", "The employer of {s} is {o}."],
        "questions": ["Who employs {s}?", "Which company does {s} work for?"],
        "heldout_questions": ["At which firm is {s} on the payroll?", "Name the organisation that pays {s}."],
        "mcq_question": "Which company does {s} work for?",
    },
}
CITY_RELATIONS: dict[str, dict] = {
    "country": {
        "statements": ["{s} is a city in {o}.", "{s} lies in {o}.", "The country of {s} is {o}."],
        "questions": ["In which country is {s}?", "Which country is {s} in?"],
        "heldout_questions": ["To what nation does {s} belong?", "Name the state that contains {s}."],
        "mcq_question": "In which country is {s}?",
    },
}
COMPANY_RELATIONS: dict[str, dict] = {
    "headquarters": {
        "statements": ["{s} is headquartered in {o}.", "{s} has its head office in {o}.",
                       "The headquarters of {s} is in {o}."],
        "questions": ["Where is {s} headquartered?", "In which city is the head office of {s}?"],
        "heldout_questions": ["From what city is {s} run?", "Name the home city of the firm {s}."],
        "mcq_question": "Where is {s} headquartered?",
    },
}
RELATIONS = {**PERSON_RELATIONS, **CITY_RELATIONS, **COMPANY_RELATIONS}

# Filler sentences for reports: they carry no fact, so a summary should drop them.
FILLERS = [
    "The weather that day was mild.", "Neighbours describe the family as quiet.", "Local papers covered the story.",
    "Friends gathered for a small celebration.", "The streets were busy with traders.", "A brass band played nearby.",
    "Records from that time are incomplete.", "Many people in the region keep gardens.", "The winter was long.",
    "Several letters from that period survive.", "The town hall was repainted that spring.",
    "A new bridge opened across the river.", "Visitors often mention the old market.",
]
