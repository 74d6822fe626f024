"""Mentions that name a state or body only in passing: as a place, a market, an origin or inside a name.

Real news names a state far more often as a setting than as an actor: "sales in Russia rose", "US oil
output fell", "US rapper The Game", "American Cyanamid Co". The sentiment of such a sentence belongs
to the sales, the rapper or the company, not to the state, yet a sentence-level model trained on
person targets (NewsMTSC) hands it to whatever mention is marked. This module recognises the common
incidental forms from the words around the mention, so the stance analysis can prefer another mention
of the target in the sentence and pull the sentence's judgement toward neutral.

It answers "incidental" only on positive evidence (a locative preposition, a head noun from the word
lists below, a personal name after a demonym, a longer proper name); everything else is left to the
model, so a mention that is also an actor ("US forces attacked", "Russia's energy subsidies") keeps
its sentiment.
"""

from __future__ import annotations

import re
from typing import Literal

IncidentalUse = Literal["place", "market", "origin", "name"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Nouns that, after a name or demonym ("US oil production", "Russian companies"), make it the
# setting of an economy or market: the sentence is about the economy, not the state.
_MARKET_HEADS = _words(
    """economy economies economic stocks stock shares dlr dlrs equities equity bonds bond dollar dollars
    currency rates rate interest inflation prices price growth output production imports import exports
    export sales deficit surplus gdp jobs unemployment payrolls retail consumer consumers spending demand
    supply supplies oil gas crude grain wheat corn soybeans beef steel car cars auto autos housing
    earnings profits revenue revenues investment investors market markets trading futures yields yield
    insurers insurer population industry industries sector manufacturing manufacturers producers refiners
    farmers farm exporters importers origin"""
)
# Nouns that make it the origin of a person, a company or a work: "a US rapper", "US firm".
_ORIGIN_HEADS = _words(
    """company companies firm firms corporation corporations business businesses subsidiary
    subsidiaries unit units division divisions bank banks banking banker bankers lender lenders carrier
    carriers airline airlines maker makers manufacturer retailer retailers brand brands group conglomerate
    giant giants chain operations listing listings partner partners owner owners buyer buyers clients
    customers shoppers tourists visitors students scientist scientists researchers doctor doctors
    rapper rappers singer singers band bands comedian actor actors actress actresses star stars
    director directors artist artists musician musicians author writer writers novelist composer
    producer player players golfer golfers athlete athletes sprinter sprinters swimmer runner cyclist
    boxer champion champions team teams coach club clubs fans tycoon tycoons billionaire businessman
    businessmen businesswoman entrepreneur entrepreneurs investor executive executives teenager
    woman women man men girl boy couple family tv television film films movie movies music album
    albums song songs charts chart show shows series sitcom network networks studio studios channel
    media newspaper newspapers magazine press website websites version edition release box
    championship championships tour league title open masters cities city towns town states
    soil politics goods products"""
)
# Nouns that keep the state an actor even after such a noun ("US trade policy", "US oil sanctions").
_STATE_HEADS = _words(
    """government governments administration administrations officials official policy policies
    plan plans proposal proposals decision decisions forces force troops military army navy warships
    warplanes jets planes bombers missiles strikes strike attack attacks raid raids aggression invasion
    sanctions sanction embargo pressure demands demand threat threats warning warnings position stance
    envoy envoys diplomats diplomat diplomacy negotiators negotiator representative representatives
    ambassador embassy delegation authorities authority intelligence agents spies president leader
    leaders minister ministers secretary spokesman spokeswoman lawmakers congress senate senators court
    courts judge prosecutors regulators veto vote votes support aid allies ally role involvement
    interference refusal retaliation response leadership interests side subsidies subsidy tariffs
    tariff quotas quota rules regulations law laws ban bans controls tax taxes war wars campaign
    offensive occupation intervention operation operations presence withdrawal base bases soldiers
    bombing bombings airstrikes"""
)
# Words before a bare demonym that make it a person: "the American", "fellow Russian".
_DETERMINERS = _words("the a an fellow young another compatriot veteran")
_DEMONYM = re.compile(r"[A-Z][a-z]+an")
# Words that close the noun phrase after a mention: scanning for its head stops there.
_STOP = _words(
    """a an the and or but of to in on at by for with from as than that which who whom whose this
    these those it its is are was were be been being has have had will would can could may might
    must shall should do does did not no said says say told also after before over under into about
    against between during while when where if"""
)
# After these, "in <state>" is about the state ("confidence in Russia"), not a place.
_IN_NOT_PLACE = _words(
    "confidence faith trust belief interest stake stakes role seat membership investment invest"
)
_PLACE_PREPOSITIONS = _words("in across throughout inside within around outside near")
# After these, "to <state>" / "from <state>" is a movement of people or goods, not an act of the state.
_MOVEMENT = _words(
    """move moved moves moving back flew fly flying flight flights travel travelled traveled trip trips
    visit visits visited return returned returning came come comes went go goes going arrived arrive
    arrives headed heading bound emigrated fled relocated shipped shipments shipment exports exported
    imports imported sales sold delivered deliveries tour tours"""
)
# Capitalised words that, after a demonym or name, mark an office of the state, not a personal name
# ("Russian President Vladimir Putin", "US Secretary of State").
_TITLES = _words(
    """President Presidents Prime Foreign Defence Defense Minister Ministry Ministers Ambassador
    Ambassadors Envoy Embassy General Generals Army Navy Air Marine Marines Government Parliament
    Senate Senator Senators Congress Congressman Congresswoman Secretary Treasury Federal Central
    State Supreme Security Intelligence Special Deputy Vice Chief Admiral Colonel Major Commander
    Attorney Justice Department Administration Representative Representatives Trade
    Mission Delegation Forces Military Officials Official Authorities Permanent Council Assembly
    Secretary-General Nations National"""
)
# Words ending a company's or organisation's name: "American Cyanamid Co", "US Anti-Doping Agency".
_NAME_ENDS = _words(
    """Co Co. Corp Corp. Corporation Inc Inc. Ltd Ltd. Plc PLC LLC Company Companies Group Bank
    Bancorp Airlines Airways Association Agency Division Institute Foundation Federation Network
    Records Pictures Studios Holdings Industries International Express Insurance Motors Steel Oil
    Open Masters Championship Championships Cup League Tour Savings Trust Fund Exchange"""
)
# Words that end the name of a body of the state or institution ("the UN's Economic Commission"); no
# personal name has them.
_BODIES = _words(
    """Commission Committee Agency Organisation Organization Programme Program Fund Office Bureau Service
    Conference Summit Court Board Panel Institute Centre Center"""
)
_FUNCTION_CAPITALS = _words(
    "The A An And But Or In On At By For With From As Of To If When While After Before Mr Mrs Ms Dr"
)
_WINDOW = 100
_POSSESSIVE_S = frozenset({"'s", "’s"})
_APOSTROPHES = frozenset({"'", "’"})
_TOKEN = re.compile(r"[A-Za-z][\w\-.&]*[\w&]|[A-Za-z]|[’']s\b|[^\w\s]")


# A place or origin joined to the mention by a hyphen: "a Moscow-based analyst", "Russian-born", "US-made",
# "non-U.S. citizens", "ex-Soviet".
_HYPHENATED_PLACE = re.compile(r"-(?:based|headquartered|registered|listed|domiciled)\b")
_HYPHENATED_ORIGIN = re.compile(r"-(?:born|bred|raised|educated|made|built|flagged|owned|speaking)\b")
_DEMONYM_COMPOUND = re.compile(r"-[A-Z][a-z]+ans?\b")  # "a Russian-American journalist": a person's origin
_NEGATED_ORIGIN = re.compile(r"\b(?:non|ex|Non|Ex)-$")


def incidental_use(  # noqa: PLR0911 - one return per rule, in the order the rules apply
    text: str, start: int, end: int, kind: str
) -> IncidentalUse | None:
    """How the mention text[start:end] (an alias of `kind`) is incidental, or None if it may be an actor.

    `kind` is the alias kind from the target list: name, metonym, person or adjective. People are never
    incidental: a leader named in a sentence is the state acting.
    """
    hyphenated = None if kind == "person" else _hyphenated_use(text, start, end)
    if kind == "person" or hyphenated:
        return hyphenated
    # The rules look at most four words either side; 100 characters hold them.
    before = _TOKEN.findall(text[max(0, start - _WINDOW) : start])
    after = _words_after(text, end)
    # "Russia's", and the bare apostrophe of a name ending in s ("the US' economy").
    possessive = bool(after) and (
        after[0] in _POSSESSIVE_S or (after[0] in _APOSTROPHES and text[start:end].endswith(("s", "S")))
    )
    if possessive:
        after = after[1:]
    # A headline in title case capitalises every word, so there capitals say nothing about names. Judged
    # near the mention only, so that a huge one-sentence text with many mentions stays linear.
    names_readable = not _mostly_title_case(text[max(0, start - 2 * _WINDOW) : end + 2 * _WINDOW])
    if names_readable:
        if name := _inside_name(before, after):
            return name
        if kind == "adjective" and after and _is_capitalised_word(after[0]) and after[0] not in _TITLES:
            return "origin"  # a demonym before a personal name: "fellow American Bershawn Jackson"
        if possessive and _is_personal_name(after):
            return "origin"  # a compatriot, not the state: "Russia's Olga Fedorova won"
    phrase = _noun_phrase(after)
    if any(word.lower() in _STATE_HEADS for word in phrase):
        return None  # "US forces", "in U.S. policy": the state acts
    if names_readable and any(word in _BODIES for word in phrase):
        return None  # one of its bodies: "the UN's Economic Commission", "the US Trade Commission"
    head = _head_use([word.lower() for word in phrase])
    if not possessive and _after_place_preposition(before):
        return head or "place"  # "sales in Russia rose", "in US oil output"
    if not names_readable:
        return None
    if head:
        return head
    if _DEMONYM.fullmatch(text[start:end]) and before and before[-1].lower() in _DETERMINERS:
        return "origin"  # the demonym is the noun, a person: "the American won", "a young American -"
    return None


def _words_after(text: str, end: int) -> list[str]:
    after = _TOKEN.findall(text[end : end + _WINDOW])
    if after[:1] == ["-"] and after[1:2] and after[1][:1].islower():
        return after[1:]  # the head noun of a compound: "a 104 mln U.S.-dlr bid" is a market's
    return after


def _hyphenated_use(text: str, start: int, end: int) -> IncidentalUse | None:
    if _HYPHENATED_PLACE.match(text, end):
        return "place"
    if _HYPHENATED_ORIGIN.match(text, end) or _NEGATED_ORIGIN.search(text, max(0, start - 4), start):
        return "origin"
    if _DEMONYM.fullmatch(text, start, end) and _DEMONYM_COMPOUND.match(text, end):
        return "origin"
    return None


def _inside_name(before: list[str], after: list[str]) -> IncidentalUse | None:
    """'Saudi American', 'United Steelworkers of America', 'American Cyanamid Co', 'US Open'."""
    if before and before[-1] == "of" and len(before) >= 2 and _is_capitalised_word(before[-2]):
        return "name"
    # A capitalised word just before ("Saudi American", "Spartak Moscow"), unless it only starts the
    # sentence or a quotation ("Any U.S. ...").
    starts_clause = len(before) < 2 or not before[-2][:1].isalnum()
    if before and _is_capitalised_word(before[-1]) and before[-1] not in _TITLES and not starts_clause:
        return "name"
    # A run of capitalised words after the mention that ends like a company or event name.
    run = []
    for word in after[:5]:
        if not (_is_capitalised_word(word) or word in {"&", "and", "of"}):
            break
        run.append(word)
    if run and run[0] in _TITLES:
        return None  # an office of the state: "U.S. National Institute of Health", "US Trade Representative"
    return "name" if any(word in _NAME_ENDS for word in run) else None


def _is_personal_name(after: list[str]) -> bool:
    """Whether the words after a possessive start with a first name and a surname, not an office of
    the state or an organisation: "Olga Fedorova", not "Foreign Ministry" or "Economic Commission"."""
    if len(after) < 2 or not all(word.isalpha() and word.istitle() for word in after[:2]):
        return False
    if after[0] in _TITLES or after[0] in _FUNCTION_CAPITALS or after[1] in _TITLES | _BODIES | _NAME_ENDS:
        return False
    return len(after) == 2 or not _is_capitalised_word(after[2])  # a third capital: an organisation


def _noun_phrase(after: list[str]) -> list[str]:
    """The words after the mention, up to four, until a function word or punctuation."""
    phrase = []
    for word in after[:4]:
        if not word[:1].isalpha() or word.lower() in _STOP:
            break
        phrase.append(word)
    return phrase


def _head_use(phrase: list[str]) -> IncidentalUse | None:
    """'market' or 'origin' when the mention modifies such a noun: 'US oil production', 'a US rapper'."""
    if any(word in _MARKET_HEADS for word in phrase):
        return "market"
    if any(word in _ORIGIN_HEADS for word in phrase):
        return "origin"
    return None


def _after_place_preposition(before: list[str]) -> bool:
    """'sales in Russia', 'talks in Washington', 'moved back to the US', 'imports from the US'."""
    words = [w.lower() for w in before[-3:] if w.lower() != "the"]
    if not words:
        return False
    preposition = words[-1]
    previous = words[-2] if len(words) >= 2 else ""
    if preposition in _PLACE_PREPOSITIONS:
        return previous not in _IN_NOT_PLACE  # "confidence in Russia" is about the state
    return preposition in {"to", "from", "into"} and previous in _MOVEMENT


def _is_capitalised_word(word: str) -> bool:
    return word[:1].isupper() and word not in _FUNCTION_CAPITALS and not word.isupper()


def _mostly_title_case(text: str) -> bool:
    # Personal and company names capitalise many words of a normal sentence too; a headline in title
    # case has (almost) no lower-case word of more than three letters.
    words = [w for w in re.findall(r"[A-Za-z]+", text) if len(w) > 3]
    return len(words) >= 4 and sum(w[0].islower() for w in words) <= 1
