"""Seeded phishing lures and benign business mail in Portuguese, Spanish, German and French.

It sits beside :mod:`mailwarden.training.content.lures` in offline training: the only
redistributable corpus is English (SpamAssassin, 2002), so without these the ``phishing`` model
meets any other language as unknown words and gives it middling scores (its recall on non-English
phishing was a third of that on English). :func:`foreign_docs` writes lures and, in equal number,
benign mail in the same four languages from short template sentences (every fifth reserved for
``phrasing="unseen"``), so that the model learns phishing wording rather than a language. Each is a
MIME message read through the detector's own path, lures dressed by
:mod:`mailwarden.training.content.lure_mime`. Limits: a few hand-written sentences per language, no
regional variety, made-up domains and names.
"""

from __future__ import annotations

import random
from email.message import EmailMessage

from mailwarden.detectors.content.detector import text_function
from mailwarden.training.content.corpus import Doc, message_doc
from mailwarden.training.content.lure_mime import lure_message

LANGUAGES = ("pt", "es", "de", "fr")
LURE: dict[str, tuple[str, ...]] = {
    "pt": ("Sua conta foi bloqueada temporariamente por motivos de segurança.",
           "Confirme seus dados cadastrais em até {h} horas para evitar o cancelamento.",
           "Detectamos um acesso incomum à sua conta {brand}.",
           "Sua senha expira hoje; clique abaixo para manter a mesma senha.",
           "Seu pacote está retido; pague a taxa de R$ {c} para liberar a entrega.",
           "Atualize seu cadastro agora para continuar usando o aplicativo.",
           "Você tem pontos acumulados que expiram hoje, resgate agora!",
           "Identificamos uma pendência no seu CPF, regularize imediatamente.",
           "Sua caixa de correio está cheia e novas mensagens serão recusadas.",
           "Seu cartão foi suspenso, valide suas informações para desbloquear."),
    "es": ("Su cuenta ha sido suspendida por actividad sospechosa.",
           "Verifique su identidad en las próximas {h} horas para evitar el bloqueo.",
           "Hemos detectado un inicio de sesión inusual en su cuenta {brand}.",
           "Su contraseña caduca hoy; haga clic abajo para conservarla.",
           "Su paquete no pudo ser entregado, pague {c} EUR de gastos de envío.",
           "Actualice sus datos bancarios para seguir recibiendo pagos.",
           "Tiene un reembolso pendiente de {c} EUR, confirme sus datos para recibirlo.",
           "Su buzón ha superado el límite de almacenamiento.",
           "Su tarjeta ha sido bloqueada, confirme sus datos de inmediato.",
           "Último aviso: su cuenta será cancelada si no la verifica."),
    "de": ("Ihr Konto wurde aus Sicherheitsgründen vorübergehend gesperrt.",
           "Bestätigen Sie Ihre Daten innerhalb von {h} Stunden, sonst wird Ihr Konto gelöscht.",
           "Wir haben eine ungewöhnliche Anmeldung bei Ihrem {brand}-Konto festgestellt.",
           "Ihr Passwort läuft heute ab; klicken Sie unten, um es beizubehalten.",
           "Ihr Paket wartet auf Zustellung, bitte zahlen Sie die Gebühr von {c} EUR.",
           "Aktualisieren Sie Ihre Zahlungsinformationen, um eine Unterbrechung zu vermeiden.",
           "Sie haben eine Rückerstattung von {c} EUR erhalten, bestätigen Sie Ihr Konto.",
           "Ihr Postfach ist voll, neue Nachrichten werden abgewiesen.",
           "Ihre Karte wurde eingeschränkt, verifizieren Sie sich sofort.",
           "Letzte Mahnung: Ihr Zugang wird heute deaktiviert."),
    "fr": ("Votre compte a été suspendu suite à une activité inhabituelle.",
           "Confirmez vos informations sous {h} heures pour éviter la fermeture du compte.",
           "Nous avons détecté une connexion inhabituelle sur votre compte {brand}.",
           "Votre mot de passe expire aujourd'hui ; cliquez ci-dessous pour le conserver.",
           "Votre colis est en attente, réglez les frais de livraison de {c} EUR.",
           "Mettez à jour vos coordonnées bancaires pour éviter une interruption de service.",
           "Vous avez droit à un remboursement de {c} EUR, validez votre dossier.",
           "Votre boîte de réception est pleine, les nouveaux messages seront rejetés.",
           "Votre carte a été bloquée, vérifiez vos informations immédiatement.",
           "Dernier avis : votre accès sera désactivé aujourd'hui."),
}
BENIGN: dict[str, tuple[str, ...]] = {
    "pt": ("Segue em anexo a ata da reunião de ontem.", "Podemos marcar a revisão para {day}?",
           "A fatura de {c} reais referente a março já foi paga pelo financeiro.",
           "Obrigado pelo retorno, vou atualizar a planilha ainda hoje.",
           "O cliente aprovou a proposta e o projeto começa na próxima semana.",
           "Lembrete: o escritório fecha mais cedo na sexta-feira.",
           "Enviei a versão nova do relatório para a equipe.",
           "A senha do wi-fi da sala de reunião está no quadro, como sempre.",
           "Por favor, confirme sua presença no treinamento de {day}.",
           "Qualquer dúvida sobre o contrato, fale com o jurídico."),
    "es": ("Adjunto el acta de la reunión de ayer.", "¿Podemos pasar la revisión al {day}?",
           "La factura de {c} euros de marzo ya está pagada.",
           "Gracias por la respuesta, actualizo la hoja de cálculo hoy.",
           "El cliente aprobó la propuesta y el proyecto empieza la próxima semana.",
           "Recordatorio: la oficina cierra antes el viernes.",
           "He enviado la nueva versión del informe al equipo.",
           "Por favor confirme su asistencia a la formación del {day}.",
           "Para cualquier duda sobre el contrato, consulte con el departamento legal.",
           "La cuenta del proveedor ya está dada de alta en el sistema."),
    "de": ("Anbei das Protokoll der gestrigen Besprechung.",
           "Können wir die Abstimmung auf {day} verschieben?",
           "Die Rechnung über {c} EUR für März ist bereits bezahlt.",
           "Danke für die Rückmeldung, ich aktualisiere die Tabelle heute.",
           "Der Kunde hat das Angebot angenommen, das Projekt startet nächste Woche.",
           "Zur Erinnerung: Das Büro schließt am Freitag früher.",
           "Ich habe die neue Version des Berichts an das Team geschickt.",
           "Bitte bestätigen Sie Ihre Teilnahme an der Schulung am {day}.",
           "Fragen zum Vertrag bitte an die Rechtsabteilung.",
           "Das Konto des Lieferanten ist jetzt im System angelegt."),
    "fr": ("Vous trouverez ci-joint le compte rendu de la réunion d'hier.",
           "Pouvons-nous décaler la revue à {day} ?",
           "La facture de {c} euros de mars a déjà été réglée.",
           "Merci pour le retour, je mets le tableau à jour aujourd'hui.",
           "Le client a accepté la proposition, le projet démarre la semaine prochaine.",
           "Rappel : le bureau ferme plus tôt vendredi.",
           "J'ai envoyé la nouvelle version du rapport à l'équipe.",
           "Merci de confirmer votre présence à la formation de {day}.",
           "Pour toute question sur le contrat, voyez avec le service juridique.",
           "Le compte du fournisseur est maintenant créé dans le système."),
}
WORDS = {  # greeting, action label, signature, subjects (lure), subjects (benign), days
    "pt": ("Prezado cliente,", "Acesse aqui:", "Equipe de Segurança",
           ("Aviso importante", "Sua conta foi bloqueada"), ("Reunião", "Relatório"),
           ("segunda-feira", "amanhã")),
    "es": ("Estimado cliente,", "Acceda aquí:", "Equipo de Seguridad",
           ("Aviso importante", "Cuenta suspendida"), ("Reunión", "Informe"),
           ("lunes", "mañana")),
    "de": ("Sehr geehrter Kunde,", "Hier anmelden:", "Ihr Sicherheitsteam",
           ("Wichtiger Hinweis", "Konto gesperrt"), ("Besprechung", "Bericht"),
           ("Montag", "morgen")),
    "fr": ("Cher client,", "Connectez-vous ici :", "Service Sécurité",
           ("Avis important", "Compte suspendu"), ("Réunion", "Rapport"), ("lundi", "demain")),
}
BRANDS = ("Itaú", "Santander", "Correos", "Sparkasse", "La Poste", "Netflix", "Microsoft")
DOMAINS = ("conta-segura.example", "verificacion-cuenta.example", "konto-pruefung.example",
           "compte-securite.example")


def foreign_docs(seed: int, count: int, kind: str, phrasing: str = "train") -> list[Doc]:
    """``count`` lures (``kind="lure"``) or benign mails, spread over :data:`LANGUAGES`."""
    rng = random.Random(f"{seed}:i18n:{kind}:{phrasing}")
    text = text_function()
    name = f"synthetic:i18n-{kind}:{seed}:{phrasing}"
    table = LURE if kind == "lure" else BENIGN
    out = []
    for i in range(count):
        lang = LANGUAGES[i % len(LANGUAGES)]
        pool = [s for j, s in enumerate(table[lang]) if phrasing == "all" or (
            (j % 5 == 4) == (phrasing == "unseen"))]
        raw = _lure(rng, lang, pool) if kind == "lure" else _benign(rng, lang, pool)
        out.append(message_doc(raw, f"{name}:{i}", text))
    return out


def add_foreign(seed: int, n: int, train: tuple[list[Doc], list[Doc]],
                test: tuple[list[Doc], list[Doc]]) -> None:
    """Add ``n`` lures / benign mails (seed ``seed``) to ``train``, ``n // 3`` (``seed + 1``,
    all phrasings) to ``test``; each pair is (positives, negatives)."""
    for s, (pos, neg), count, phrasing in ((seed, train, n, "train"),
                                           (seed + 1, test, n // 3, "all")):
        pos.extend(foreign_docs(s, count, "lure", phrasing))
        neg.extend(foreign_docs(s, count, "benign", phrasing))


def _slots(rng: random.Random, lang: str) -> dict[str, str]:
    return {"brand": rng.choice(BRANDS), "domain": rng.choice(DOMAINS),
            "h": str(rng.choice((12, 24, 48))), "c": f"{rng.randint(2, 900)},{rng.randint(10, 99)}",
            "day": rng.choice(WORDS[lang][5]), "first": "cliente", "n": str(rng.randint(10, 9999))}


def _lure(rng: random.Random, lang: str, pool: list[str]) -> bytes:
    slots = _slots(rng, lang)
    greeting, action, signature, subjects = WORDS[lang][:4]
    body = [greeting, *(s.format(**slots) for s in rng.sample(pool, k=min(len(pool), 3)))]
    url = f"https://{slots['domain']}/{slots['n']}"
    return lure_message(rng, slots, rng.choice(subjects), body, f"{action} {url}",
                        f"{slots['brand']} {signature}")


def _benign(rng: random.Random, lang: str, pool: list[str]) -> bytes:
    slots = _slots(rng, lang)
    msg = EmailMessage()
    msg["From"] = f"colleague{rng.randint(1, 50)}@example.org"
    msg["To"] = "team@example.org"
    msg["Subject"] = rng.choice(WORDS[lang][4])
    msg.set_content("\n\n".join(s.format(**slots) for s in rng.sample(pool, k=min(len(pool), 3))))
    return bytes(msg)
