"""A seeded generator of synthetic business mail, confidential or not, for the ``sensitive`` model.

No corpus of confidential business mail may be shipped, so :mod:`mailwarden.training.content.train`
trains ``sensitive`` on this generator's output. :func:`synthetic_docs` composes messages from
sentence templates with random slots (companies, people, projects, amounts, dates): ``confidential``
ones discuss unreleased financials, deals, pay and HR cases, legal matters, customer data, security
incidents or roadmaps, with or without a confidentiality marking; ``benign`` ones are ordinary
business mail (meetings, public announcements, logistics) that often carries the same boilerplate
"this e-mail may be confidential" footer, so the model must learn content, not the footer. Either
kind may be wrapped around a real ham text (a quoted thread). Every fifth template sentence is
reserved for ``phrasing="unseen"`` so evaluation can measure generalisation to new wording. Limits:
English only, a closed vocabulary of templates, no attachments; see docs/content-evaluation.md.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from mailwarden.training.content.corpus import Doc, text_doc

COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella Holdings", "Stark Industries",
             "Wayne Enterprises", "Hooli", "Vandelay Industries", "Tyrell Systems", "Cyberdyne",
             "Soylent Foods", "Wonka Confectionery", "Oscorp", "Massive Dynamic", "Aperture Labs")
PEOPLE = ("Alice Martin", "Bob Chen", "Carla Diaz", "David Okafor", "Emma Schulz", "Farid Haddad",
          "Grace Kim", "Hugo Laurent", "Irene Novak", "Jamal Wright", "Keiko Tanaka",
          "Liam O'Brien", "Maria Rossi", "Nikhil Rao", "Olga Petrova", "Pablo Ortega")
PROJECTS = ("Falcon", "Bluebird", "Everest", "Nightjar", "Orion", "Kestrel", "Atlas", "Juniper")
ROLES = ("senior engineer", "sales director", "controller", "product manager", "analyst",
         "head of support", "VP operations", "account executive")
QUARTERS = ("Q1", "Q2", "Q3", "Q4", "first half", "second half", "fiscal year")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

CONFIDENTIAL: dict[str, tuple[str, ...]] = {
    "financials": (
        "{quarter} revenue came in at ${m}M, {p}% below the forecast we gave the board.",
        "Please do not share these numbers before the earnings call on {day}.",
        "Gross margin dropped to {p}% and we will miss guidance unless {company} signs.",
        "Attached is the draft of the unaudited {quarter} results for the audit committee.",
        "Cash runway is down to {n} months; the CFO wants a plan before the announcement.",
    ),
    "deal": (
        "Project {project}: we are preparing an offer for {company} at ${n} per share.",
        "The term sheet values {company} at ${m}M including the earn-out.",
        "Nobody outside the deal team may know that we are in talks with {company}.",
        "Due diligence found {n} open lawsuits at {company}; legal wants to renegotiate.",
        "The board approved buying {company}; the announcement is embargoed until {day}.",
    ),
    "people": (
        "{person}'s salary will go from ${k},000 to ${k2},000 with the promotion.",
        "We plan to let go of {n} people in {role} roles next month; keep this between us.",
        "{person} is on a performance improvement plan and may be terminated in {n} weeks.",
        "The medical leave of {person} is related to a diagnosis she asked us to keep private.",
        "Here are the bonus amounts per employee for the {quarter}: {person} ${k},000.",
    ),
    "legal": (
        "Privileged and confidential: attorney-client communication about the {company} dispute.",
        "The settlement with {company} is ${m}M and is covered by a non-disclosure agreement.",
        "Outside counsel thinks we are exposed on the patent claim filed by {company}.",
        "Please preserve all documents; the regulator opened an inquiry into project {project}.",
        "Our litigation strategy is to delay until {company} runs out of funding.",
    ),
    "customers": (
        "Attached is the full customer list with contact details and contract values.",
        "Here is the export of {n} customer accounts from the CRM, including renewal dates.",
        "{company} pays ${k},000 a month; their contract terms are strictly confidential.",
        "Our pricing floor for {company} is {p}% below list; never quote it in writing.",
        "The churn report names the {n} accounts most likely to leave us for {company}.",
    ),
    "security": (
        "We had a security incident: an attacker accessed the {project} database for {n} days.",
        "Do not disclose the breach until legal decides whether to notify customers.",
        "The penetration test found {n} critical vulnerabilities in the payment service.",
        "The root password of the production cluster was shared in a ticket; rotate it today.",
        "Internal audit found that {person} exported payroll data to a personal drive.",
    ),
    "roadmap": (
        "The unreleased {project} roadmap is attached; it must not reach {company}.",
        "We will cut the price by {p}% in the {quarter} to undercut {company}.",
        "The source code and design documents of project {project} are in the shared folder.",
        "Launch of {project} slips to the {quarter}; customers must not learn this yet.",
        "Our bid for the {company} tender is ${m}M; the competing bids leaked to us are lower.",
    ),
}

BENIGN: dict[str, tuple[str, ...]] = {
    "meeting": (
        "Can we move our weekly sync to {day} at {h} pm?",
        "The project {project} kickoff is on {day}; agenda and room details below.",
        "Thanks for joining the call today, the slides are on the team page.",
        "I will be out of the office on {day}; {person} can help in the meantime.",
        "Please add your topics to the agenda before {day}.",
    ),
    "public": (
        "Our press release about the partnership with {company} went out this morning.",
        "The {quarter} newsletter is online; it covers the new office and the team outing.",
        "We are hiring a {role}; please share the public job posting with your network.",
        "Congratulations to {person} on the customer service award!",
        "The annual report published last month is available on our website.",
    ),
    "logistics": (
        "The delivery from {company} arrives on {day}; someone needs to sign for it.",
        "Reminder: the office is closed on {day} for maintenance of the elevators.",
        "Lunch for the workshop is ordered for {n} people; tell me about allergies.",
        "My flight lands at {h} pm, I will take a taxi to the hotel.",
        "The printer on the second floor is fixed, thanks to {person}.",
    ),
    "work": (
        "I reviewed the draft and left a few comments on the wording in section {n}.",
        "Could you send me the public product brochure for {company}?",
        "The training on the new expense tool is on {day}; it takes about {n} minutes.",
        "Here is the link to the support article we discussed.",
        "Let me know if you need anything else for the {project} demo.",
    ),
}

MARKERS = ("CONFIDENTIAL - do not forward.", "Strictly confidential, internal use only.",
           "Please keep this between us for now.", "Not for distribution outside the team.",
           "Sensitive: need-to-know only.")
FOOTER = ("This e-mail and any attachments may be confidential and are intended solely for "
          "the addressee. If you received it in error, please notify the sender and delete it.")
GREETINGS = ("Hi {first},", "Hello {first},", "{first},", "Dear {first},", "Team,")
CLOSINGS = ("Thanks,\n{first}", "Best regards,\n{person}", "Cheers,\n{first}", "-- {first}")


def synthetic_docs(
    seed: int,
    count: int,
    kind: str,
    phrasing: str = "train",
    ham_texts: Sequence[str] = (),
) -> list[Doc]:
    """``count`` generated documents of ``kind`` ("confidential" or "benign").

    ``phrasing`` selects the template sentences: "train" (all but every fifth), "unseen" (only
    every fifth) or "all". ``ham_texts`` are real texts that may be quoted under a message.
    """
    topics = {"confidential": CONFIDENTIAL, "benign": BENIGN}[kind]
    rng = random.Random(f"{seed}:{kind}:{phrasing}")
    pool = {t: _phrasing(s, phrasing) for t, s in topics.items()}
    name = f"synthetic:{kind}:{seed}:{phrasing}"
    return [text_doc(_message(rng, pool, kind, ham_texts), f"{name}:{i}") for i in range(count)]


def _phrasing(sentences: tuple[str, ...], phrasing: str) -> tuple[str, ...]:
    if phrasing == "all":
        return sentences
    unseen = phrasing == "unseen"
    return tuple(s for i, s in enumerate(sentences) if (i % 5 == 4) == unseen)


def _message(rng: random.Random, pool: dict[str, tuple[str, ...]], kind: str,
             ham_texts: Sequence[str]) -> str:
    person = rng.choice(PEOPLE)
    lines = [_fill(rng, rng.choice(GREETINGS), person)]
    for topic in rng.sample(sorted(pool), k=rng.randint(1, 2)):
        count = min(len(pool[topic]), rng.randint(1, 3))
        lines.extend(_fill(rng, s, person) for s in rng.sample(pool[topic], k=count))
    if kind == "confidential" and rng.random() < 0.6:
        lines.insert(rng.choice((0, 1, len(lines))), rng.choice(MARKERS))
    lines.append(_fill(rng, rng.choice(CLOSINGS), rng.choice(PEOPLE)))
    if rng.random() < 0.35:
        lines.append(FOOTER)
    subject = _fill(rng, rng.choice(("Re: {project}", "{project} update", "{quarter} numbers",
                                     "Quick question", "Fwd: {company}", "Follow-up")), person)
    body = "\n\n".join(lines)
    if ham_texts and rng.random() < 0.4:
        quoted = rng.choice(ham_texts)[:2000]
        body += "\n\n----- Original message -----\n" + quoted
    return f"{subject}\n{body}"


def _fill(rng: random.Random, template: str, person: str) -> str:
    return template.format(
        company=rng.choice(COMPANIES), person=person, first=person.split(maxsplit=1)[0],
        project=rng.choice(PROJECTS), role=rng.choice(ROLES), quarter=rng.choice(QUARTERS),
        day=rng.choice(DAYS), m=f"{rng.randint(2, 900)}.{rng.randint(0, 9)}",
        p=rng.randint(2, 40), n=rng.randint(2, 60), k=rng.randint(60, 180),
        k2=rng.randint(181, 260), h=rng.randint(1, 5),
    )
