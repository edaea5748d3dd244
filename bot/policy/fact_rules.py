"""The rules code applies to a proposed fact: is it a secret, an instruction, about the bot, or
about someone other than the speaker? Pure functions over text; `bot.memory.facts` calls them.

What is decided (see tests/policy/test_fact_validation.py and the labelled corpus in tests/corpus/):

* Secrets are never stored, whoever they belong to: passwords, PINs, codes, API keys and tokens,
  card, account and IBAN numbers, security answers. Found by keyword (in the attribute, the value
  or the sentence that states it, in English, French, German and Spanish) and by shape (long
  digit runs, IBANs, known key prefixes, long mixed letter-and-digit strings). A sentence that
  mentions a PIN loses every fact it states: safer than guessing which part was the secret.
* Instructions are not facts: directives to the bot (from now on, you must, every reply, note to
  the assistant, SYSTEM:, house rule, imperatives such as "reply…", "ignore…", "call me…"), in
  the four languages. A fact stated in an instructing sentence is kept only when its own clause
  is a first-person statement ("I speak French, so answer in French" keeps the language).
  "Call me Zed" alone is the speaker's preferred name, a fact; with a directive around it
  ("from now on you must call me Master") it is not.
* Statements about the bot are not the speaker's facts ("you're a great bot"); "a Discord bot"
  the speaker builds, a band called "Thank You Scientist" or a dental assistant are.
* A fact is the speaker's: what they say about another person (their sister's city, Bob's
  number, where Carol works) is not stored as theirs. The speaker's relationships are theirs:
  "I have a sister named Emma", "married to Carol", "lives with my girlfriend in Manchester".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --------------------------------------------------------------------------------- secrets

_SECRET_WORDS = re.compile(
    r"\b(passwords?|passwd|pw|pwd|passcodes?|combination|security number|passphrases?|pins?"
    r"|pin codes?|api[ _-]?keys?|access keys?"
    r"|secret(?: key)?s?|private keys?|tokens?|cvv|cvc|security (?:code|questions?|answers?)"
    r"|iban|account (?:number|no)|acct|routing number|sort code|card number|credit card"
    r"|debit card|bank card|ssn|social security|seed phrase|recovery (?:code|phrase|key)s?"
    r"|backup codes?|2fa|otp|one[- ]time (?:code|password)|door code|alarm code|login"
    r"|credentials?|mot de passe|mdp|code (?:pin|secret|confidentiel)|clé api|identifiants"
    r"|numéro de (?:carte|compte)|carte bancaire|rib|cryptogramme|passwort|kennwort|geheimzahl"
    r"|zugangsdaten|kontonummer|kartennummer|kreditkarte|bankkarte|sicherheitscode|contraseña"
    r"|clave|número de (?:cuenta|tarjeta)|tarjeta de crédito|código de seguridad)\b",
    re.IGNORECASE,
)
_SECRET_SHAPES = (
    re.compile(r"(?:\d[ -]?){12,}"),  # card, account and IBAN digits
    re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),  # IBAN
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # US social security number
    re.compile(
        r"\b(?:sk-|sk_(?:live|test)_|rk_live_|pk_live_|ghp_|gho_|ghs_|github_pat_|glpat-|xox[abpr]-"
        r"|AKIA[0-9A-Z]{12}|AIza|eyJ)[\w-]{6,}",
    ),
    re.compile(r"-----BEGIN [A-Z ]*KEY-----"),
    re.compile(r"\b[\w-]{20,}\.[\w-]{5,}\.[\w-]{20,}\b"),  # Discord bot token, JWT
)
_LONG_RUN = re.compile(r"[A-Za-z0-9_\-+/=]{20,}")


# A short number said to be a code ("my code 7305", "code de carte bleue … 6431") is one.
_CODE_WORD = re.compile(r"\b(?:codes?|code de|código|zahlencode)\b", re.IGNORECASE)
_SHORT_NUMBER = re.compile(r"^\W*\d{3,8}\W*$")


def secret_reason(attribute: str, value: str, sentences: list[str]) -> str | None:
    for text in (attribute, value, *sentences):
        if _SECRET_WORDS.search(text):
            return "a secret (credential, code or account number)"
    if _SHORT_NUMBER.match(value) and any(_CODE_WORD.search(t) for t in (attribute, *sentences)):
        return "a secret (a code)"
    for shape in _SECRET_SHAPES:
        if shape.search(value):
            return "a secret by its shape"
    for run in _LONG_RUN.findall(value):
        kinds = sum(bool(re.search(p, run)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
        if kinds >= 2 and re.search("[0-9]", run):
            return "a secret by its shape"
    return None


# ---------------------------------------------------------------------------- instructions

_DIRECTIVES = re.compile(
    "|".join(
        (
            # English: time frames, overriding, roles, addressing the bot, reply scope
            r"\b(?:from now on|from here on|going forward|henceforth|from this point"
            r"|in (?:all )?future (?:replies|answers|conversations|chats|messages))\b",
            r"\b(?:ignore|disregard|forget|override|bypass|stop following|don't follow"
            r"|do not follow|stop obeying)\b.{0,40}\b(?:instructions?|rules?|guidelines?|prompt"
            r"|system|previous|above|prior|policy|restrictions|what you|everything)",
            r"\b(?:system|developer|admin) ?(?:prompt|message|mode|note|override)\b",
            r"^\W*(?:system|assistant|developer|admin|sys)\s*[:>]",
            r"[\[<({]\s*\|?\s*(?:system|sys|assistant|developer|admin|inst|im_start)\b",
            r"\b(?:note|message|instructions?|rules?) (?:to|for) (?:the )?(?:assistant|bot|ai"
            r"|model|mnemo)\b",
            r"\b(?:hey|dear|ok|okay) (?:bot|assistant|mnemo)\b",
            r"\byou(?:'re| are| will| must| should| shall| have to| need to| are to| may not"
            r"| can't| cannot| mustn't| can now| will now) ?(?:now|a|an|my|the|to|not|never"
            r"|always|only|be|in|obey|follow|answer|reply|respond|say|stop|start|swear|act|talk)?\b",
            r"\byour (?:new |only |real |true |main )?(?:name|job|task|role|purpose|rules?"
            r"|instructions|goal|mission|prompt|answers?|replies|responses|messages?)\b",
            r"\b(?:i want|i'd like|i would like|i need) you to\b",
            r"\b(?:make sure|be sure|remember) (?:to|that you)\b|\bit's important that you\b",
            r"\bwhen(?:ever)? (?:you|someone|anyone|people) (?:answer|reply|respond|talk|write"
            r"|asks?)\b|\bevery time i say\b",
            r"\byour (?:config|configuration|settings|system|programming|guidelines"
            r"|behaviou?r|personality|memory)\b",
            r"\b(?:assistant|bot|ai|model|chatbot|mnemo) (?:is|are) (?:required|supposed|expected"
            r"|allowed|not allowed|forbidden|meant|obliged|instructed) to\b",
            # Addressing the listener in French, German or Spanish: about the bot, not the speaker
            r"^\W*(?:tu|vous|du|ihr|tú|usted)\s+\w+",
            r"\b(?:the|this) (?:assistant|bot|ai|model|chatbot)\b.{0,20}\b(?:must|should|shall"
            r"|will|has to|needs to|is to|answers|replies|responds|always|never)\b",
            r"\b(?:every|each|all|any)(?: of)?(?: your| the| future)? (?:reply|replies|answer"
            r"|answers|response|responses|message|messages|output|outputs)\b",
            r"\b(?:reply|respond|answer|replies|answers|responses) (?:must|should|only|always"
            r"|in \w+ only)\b",
            r"\b(?:developer|god|admin|debug|unrestricted|jailbreak|dan) mode\b|\bjailbreak"
            r"|\bno (?:restrictions|filters|limits)\b",
            r"\b(?:house|server|channel|chat|golden|new) (?:rule|policy|directive)s?\b",
            r"^\W*(?:rule|policy|directive|instructions?|override|command|order)s?\b[^:]{0,30}:",
            # French
            r"\b(?:à partir de maintenant|désormais|dorénavant|à l'avenir|tu dois|vous devez"
            r"|tu devras|il faut que tu|message système|invite système|prompt système"
            r"|note (?:à|pour) l'(?:assistant|ia)|(?:à|pour) l'assistant|règle de la maison"
            r"|règle du serveur|nouvelle règle|consignes?|instructions? (?:précédentes"
            r"|antérieures)|(?:chaque|toutes (?:tes|vos|les)) (?:réponses?|messages?))",
            # German
            r"\b(?:ab jetzt|von nun an|ab sofort|in zukunft|künftig|du musst|sie müssen"
            r"|du sollst|du solltest|du darfst nicht|systemnachricht|systemprompt"
            r"|hinweis (?:an|für) den assistenten|(?:an|für) den assistenten|hausregel"
            r"|serverregel|neue regel|anweisung(?:en)?|(?:jede|alle|jeder) (?:antwort|antworten"
            r"|nachricht|nachrichten))\b",
            # Spanish
            r"\b(?:a partir de ahora|desde ahora|de ahora en adelante|en adelante|debes"
            r"|tienes que|deberás|mensaje del sistema|prompt del sistema|nota para el asistente"
            r"|para el asistente|al asistente|regla del servidor|regla de la casa|nueva regla"
            r"|tus instrucciones|instrucciones anteriores|(?:cada|todas las|todas tus)"
            r" (?:respuestas?|mensajes?))\b",
        )
    ),
    re.IGNORECASE,
)
# A clause that starts with one of these is an order, not a statement.
_IMPERATIVE = re.compile(
    r"^\W*(?:please |pls |and |also |now |so )?(?:(?:always|never)(?!\s+(?:\w+ed|been|had|was"
    r"|were|did|got|seen|done|gone|eaten|known)\b)|don't|do not|stop|start|ignore"
    r"|disregard|forget|pretend|act as|roleplay|behave|obey|reply|respond|answer|say|tell"
    r"|talk|speak|write|use|add|include|put|sign|end|begin|prefix|translate|repeat|reveal"
    r"|print|output|keep|assume|treat|trust|recommend|mention"
    r"|act like|be more|be less|stop being|swear|n'oublie|n'oubliez|tu|vous|du|tú|usted"
    r"|promote|whenever|every time|réponds|répondez|parle|parlez|écris|écrivez|dis|dites"
    r"|appelle-moi|appelez-moi|ignore|ignorez|oublie|oubliez|mentionne|mentionnez|recommande"
    r"|ajoute|ajoutez|antworte|antworten sie|ignoriere|vergiss|empfiehl|sag|schreib"
    r"|nenn mich|responde|contesta|ignora|olvida|recomienda|dime|escribe|habla|llámame)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(
    r"^\W*(?:(?:and|but|so|also|et|mais|und|aber|y|pero)\s+)?(?:i|i'm|i've|i'd|i'll|my|je|j'"
    r"|mon|ma|mes|ich|mein|meine|yo|me|mi|mis)\b",
    re.IGNORECASE,
)
_INSTRUCTION_ATTRIBUTE = re.compile(
    r"\b(?:rules?|policy|instructions?|system|prompt|directive|override|jailbreak|persona"
    r"|roleplay|answers?|reply|replies|responses?|respond|assistant|bot|chatbot|obedience"
    r"|trigger|règle|consigne|regel|anweisung|regla|instrucción)\b",
    re.IGNORECASE,
)


def instruction_reason(attribute: str, value: str, sentences: list[str]) -> str | None:
    if _INSTRUCTION_ATTRIBUTE.search(attribute):
        return "instruction-shaped attribute"
    if _DIRECTIVES.search(value):
        return "instruction-shaped"
    for sentence in sentences:
        clause = value_clause(sentence, value)
        ordering = _DIRECTIVES.search(sentence) or _IMPERATIVE.search(clause)
        if ordering and (_DIRECTIVES.search(clause) or not _FIRST_PERSON.search(clause)):
            return "stated inside an instruction"
    return None


# ------------------------------------------------------------------------------- the bot

_BOT_WORDS = re.compile(r"\b(?:mnemo|chatgpt)\b|\b(?:the|this) (?:assistant|chatbot|ai)\b", re.I)
_BOT = re.compile(r"\bbot\b", re.IGNORECASE)
# "a Discord bot", "my bot", "un bot": some bot of the speaker's, not this one.
_SOME_BOT = re.compile(
    r"\b(?:a|an|my|our|his|her|their|discord|telegram|slack|twitch|matrix|irc|chat|un|une|mon"
    r"|notre|ein|einen|mein|meinen|unser|unseren|mi|nuestro)\b[\w\s-]{0,20}$",
    re.IGNORECASE,
)
_YOU = re.compile(r"\byou(?:r|rs|rself|'re|'ll|'ve)?\b", re.IGNORECASE)


def about_the_bot(attribute: str, value: str) -> bool:
    for text in (attribute.replace("_", " "), value):
        if _BOT_WORDS.search(text):
            return True
        if any(not _SOME_BOT.search(text[: m.start()]) for m in _BOT.finditer(text)):
            return True
    return any(not _in_title(value, m) for m in _YOU.finditer(value))


def _in_title(text: str, match: re.Match[str]) -> bool:
    """`You` inside a capitalised name (Thank You Scientist, You Me at Six) is no address."""
    if not match.group(0)[0].isupper():
        return False
    before = text[: match.start()].split()
    after = text[match.end() :].split()
    return bool((before and before[-1][:1].isupper()) or (after and after[0][:1].isupper()))


# ---------------------------------------------------------------------------- third party

_RELATIONS = (
    r"friends?|best friend|sisters?|brothers?|siblings?|mother|mom|mum|mommy|father|dad|daddy"
    r"|parents?|wife|husband|spouse|partner|girlfriend|boyfriend|fiancée?|sons?|daughters?"
    r"|kids?|child|children|baby|cousins?|uncle|aunt|nephew|niece|grandma|grandmother|grandpa"
    r"|grandfather|grandparents?|boss|manager|colleagues?|coworkers?|co-workers?|roommates?"
    r"|flatmates?|housemates?|neighbou?rs?|classmates?|teacher|landlord|landlady|ex|bestie|bff"
    r"|buddy|pal|teammates?|mentor|tutor|students?|clients?|in-laws?|mother-in-law|father-in-law|ami|amie|copain|copine|sœur|soeur|frère"
    r"|frere|mère|mere|père|pere|mari|femme|fils|fille|oncle|tante|patronne?|collègue|voisine?"
    r"|colocataire|coloc|grand-mère|grand-père|freund|freundin|schwester|bruder|mutter|mama"
    r"|vater|papa|frau|mann|ehemann|ehefrau|sohn|tochter|cousine|onkel|chef|chefin|kollege"
    r"|kollegin|nachbar|nachbarin|mitbewohner|mitbewohnerin|amigo|amiga|hermana|hermano|madre"
    r"|mamá|padre|papá|esposa|esposo|marido|mujer|novio|novia|hijo|hija|primo|prima|tío|tía"
    r"|jefe|jefa|compañero|compañera|vecino|vecina"
)
_THIRD_VERBS = (
    r"is|was|are|were|lives|lived|works|worked|has|had|just|moved|drives|plays|loves|likes"
    r"|speaks|goes|went|studies|got|gets|owns|teaches|wants|said|says|habite|vit|travaille|est"
    r"|a|wohnt|arbeitet|ist|hat|vive|trabaja|es|tiene|está"
)
_POSSESSIVE_MY = (
    r"my|our|mon|ma|mes|notre|nos|mein|meine|meinem|meiner|unser|unsere|unserer|mi|mis|nuestro"
    r"|nuestra"
)
# "my sister lives…", "my friend Bob's…", "our neighbour plays…", "ma sœur habite…"
_RELATION_SUBJECT = re.compile(
    rf"\b(?:{_POSSESSIVE_MY})\s+(?:[\w-]+\s+){{0,2}}?(?:{_RELATIONS})\b"
    rf"(?P<after>(?:\s+[A-Z][\w-]+)?(?:['’]s\b|,?\s+(?:{_THIRD_VERBS})\b|\s+(?:who|que|qui|der"
    rf"|die)\b))",
    re.IGNORECASE,
)
_RELATION_AT_START = re.compile(
    rf"^\W*(?:(?:{_POSSESSIVE_MY})\s+)?(?:[\w-]+\s+){{0,2}}?(?:{_RELATIONS})\b"
    r"(?!\s+(?:and|et|und|y)\s+(?:i|je|moi|ich|yo)\b)",
    re.IGNORECASE,
)
_RELATION_THEN_WHO = re.compile(rf"\b(?:{_RELATIONS})\s+(?:who|que|qui|der|die)\b", re.I)
_PERSONAL_NOUNS = (
    r"password|number|phone|address|email|e-mail|birthday|job|pin|account|card|car|house|home"
    r"|wife|husband|kids|son|daughter|dog|cat|favou?rite|age|mom|dad|mother|father|brother"
    r"|sister|friend|boss|salary|school|username|login|name|city|work"
)
# "Carol's password", "Bob's number": a name (capitalised) owning something personal.
_NAME_POSSESSIVE = re.compile(rf"\b[A-Z][a-z]+['’]s\s+(?:[a-z]+\s+)?(?:{_PERSONAL_NOUNS})\b")
# "my sister's car" (but "my sister's name" is the speaker's relationship).
_RELATION_POSSESSIVE = re.compile(rf"\b(?:{_RELATIONS})['’]s\b(?!\s+name\b)", re.IGNORECASE)
_OF_SOMEONE = re.compile(
    r"\b(?:numéro|adresse|mail|téléphone|anniversaire|número|dirección|teléfono|cumpleaños"
    r"|nummer|geburtstag)\s+(?:de|d'|von|del)\s*[A-Z]",
)
_PRONOUN_SUBJECT = re.compile(
    r"\b(?:he|she|they|he's|she's|they're|il|elle|ils|elles|él|ella|er)\b"
    r"|^\W*(?:his|her|their|sein|seine|ihr|ihre|su|sus)\b",
    re.IGNORECASE,
)
# A pronoun in a value is a statement about that person only with its verb ("she is a
# nurse"); "she/her" alone is the speaker's pronouns.
_PRONOUN_STATEMENT = re.compile(
    rf"\b(?:he|she|they|il|elle|ils|elles|él|ella|er)\s+(?:{_THIRD_VERBS})\b|\b(?:he's|she's"
    r"|they're)\b",
    re.IGNORECASE,
)
# "Carol works at…", "Alex is 31": a name (not a determiner or a sentence opener) then a verb.
_NAME_SUBJECT = re.compile(
    rf"^\W*(?!(?:I|I'm|We|The|This|That|Just|Thanks|Yesterday|Today|Hi|Hey|Hello|So|Also|Well"
    rf"|Yes|No|Oh|Ok|Okay|Btw|And|But|Le|La|Les|Der|Die|Das|El|Los|Las|(?i:{_POSSESSIVE_MY}))\b)"
    rf"[A-Z][a-z]+(?:,?\s+[\w-]+){{0,3}}?,?\s+(?:{_THIRD_VERBS})\b"
)
# "my favourite band", "mon groupe": the speaker's own thing (a relation is matched apart).
_MY_THING = re.compile(
    rf"\b(?:{_POSSESSIVE_MY})\s+(?!(?:[\w-]+\s+){{0,2}}(?:{_RELATIONS})\b)\w", re.IGNORECASE
)
_SPEAKER = re.compile(
    r"\b(?:i|i'm|i’m|i've|i'd|i'll|im|myself|we|we're|we've|je|j'|j’|moi|nous|ich|mich|mir|wir"
    r"|yo|nosotros|nosotras)\b"
    r"|\bme (?:llamo|gusta|encanta)\b|^\W*(?:trabajo|vivo|tengo|soy|estoy|hablo|estudio)\b",
    re.IGNORECASE,
)
_RELATIONSHIP_ATTRIBUTE = {"name", "names", "nickname", "count", "number", "of", "has", "have"}


@dataclass(frozen=True, slots=True)
class _Marker:
    at: int
    third: bool


def third_party_reason(attribute: str, value: str, sentences: list[str]) -> str | None:
    words = set(attribute.split("_"))
    relation = re.compile(rf"^(?:{_RELATIONS})$", re.IGNORECASE)
    if any(relation.match(w) for w in words) and not all(
        relation.match(w) or w in _RELATIONSHIP_ATTRIBUTE for w in words
    ):
        return "about someone else (attribute)"
    if (
        _NAME_POSSESSIVE.search(value)
        or _RELATION_AT_START_OF_VALUE.search(value)
        or _PRONOUN_STATEMENT.search(value)
    ):
        return "about someone else"
    for sentence in sentences:
        start = _value_start(sentence, value)
        if start is not None and _nearest_subject_is_third(sentence[:start]):
            return "stated about someone else"
    return None


_RELATION_AT_START_OF_VALUE = re.compile(
    rf"^\W*(?:(?:{_POSSESSIVE_MY})\s+)?(?:[\w-]+\s+)?(?:{_RELATIONS})(?:['’]s\b(?!\s+name)|\s+"
    rf"(?:{_THIRD_VERBS})\b)",
    re.IGNORECASE,
)


# "my brother's name is Juan", "ma sœur s'appelle Léa": naming a relative is the speaker's
# relationship. ("my brother is Juan" stays ambiguous with "my brother is Canadian": not kept.)
_RELATIVE_NAMED = re.compile(
    rf"\b(?:{_RELATIONS})(?:['’]s name is|\s+(?:is )?(?:called|named)|\s+heißt|\s+s'appelle"
    r"|\s+se llama)\s*$",
    re.IGNORECASE,
)


def _nearest_subject_is_third(prefix: str) -> bool:
    """Who the text before a value is about: the last subject named before it wins."""
    if _RELATIVE_NAMED.search(prefix):
        return False
    markers = [_Marker(m.start(), False) for m in _SPEAKER.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _RELATION_SUBJECT.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _RELATION_THEN_WHO.finditer(prefix)]
    markers += [_Marker(m.start(), False) for m in _MY_THING.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _NAME_POSSESSIVE.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _RELATION_POSSESSIVE.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _OF_SOMEONE.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _PRONOUN_SUBJECT.finditer(prefix)]
    markers += [_Marker(m.start(), True) for m in _NAME_SUBJECT.finditer(prefix)]
    if (at_start := _RELATION_AT_START.search(prefix)) is not None:
        markers.append(_Marker(at_start.start(), True))
    if not markers:
        return False
    return max(markers, key=lambda m: (m.at, not m.third)).third


# ------------------------------------------------------------------------------- helpers

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSE_BREAK = re.compile(
    r",\s+|\s*[:;]\s+|\s+(?:and|but|so|because|while|et|mais|und|aber|pero)\s+", re.IGNORECASE
)
_TOKEN = re.compile(r"\w{3,}|\d+")


def _tokens(text: str) -> set[str]:
    return {token.casefold() for token in _TOKEN.findall(text)}


def sentences_stating(value: str, cited_text: str) -> list[str]:
    """The sentences of the cited text that share the most words with the value."""
    wanted = _tokens(value)
    scored = [
        (len(wanted & _tokens(sentence)), sentence.strip())
        for sentence in _SENTENCE_END.split(cited_text)
        if sentence.strip()
    ]
    best = max((score for score, _ in scored), default=0)
    if best == 0:  # a paraphrase: judged by everything it cites
        return [sentence for _, sentence in scored]
    return [sentence for score, sentence in scored if score == best]


def value_clause(sentence: str, value: str) -> str:
    """The clause of `sentence` that says the value (the whole sentence when unsure)."""
    wanted = _tokens(value)
    clauses = [c for c in _CLAUSE_BREAK.split(sentence) if c.strip()]
    if not clauses or not wanted:
        return sentence
    return max(clauses, key=lambda c: len(wanted & _tokens(c)))


def _value_start(sentence: str, value: str) -> int | None:
    """Where the value's first word appears in the sentence."""
    folded = sentence.casefold()
    positions = []
    for token in _tokens(value):
        match = re.search(rf"(?<!\w){re.escape(token)}", folded)
        if match:
            positions.append(match.start())
    return min(positions) if positions else None
