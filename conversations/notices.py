"""What the service itself says to visitors (system notices), in the visitor's language."""

NOTICES: dict[str, dict[str, str]] = {
    "length": {
        "en": "This answer was cut short because it reached its length limit.",
        "es": "Esta respuesta se cortó porque alcanzó su límite de longitud.",
        "fr": "Cette réponse a été interrompue car elle a atteint sa longueur maximale.",
        "de": "Diese Antwort wurde gekürzt, weil sie ihre maximale Länge erreicht hat.",
        "pt": "Esta resposta foi interrompida porque atingiu o limite de tamanho.",
    },
    "content_filter": {
        "en": "Part of this answer was withheld by the content filter.",
        "es": "Parte de esta respuesta fue retenida por el filtro de contenido.",
        "fr": "Une partie de cette réponse a été retenue par le filtre de contenu.",
        "de": "Ein Teil dieser Antwort wurde vom Inhaltsfilter zurückgehalten.",
        "pt": "Parte desta resposta foi retida pelo filtro de conteúdo.",
    },
    "unavailable": {
        "en": "Sorry, the assistant can't answer right now. Your message is saved and a person "
        "from our team can see it.",
        "es": "Lo sentimos, el asistente no puede responder ahora. Tu mensaje está guardado y "
        "una persona de nuestro equipo puede verlo.",
        "fr": "Désolé, l'assistant ne peut pas répondre pour le moment. Votre message est "
        "enregistré et une personne de notre équipe peut le voir.",
        "de": "Entschuldigung, der Assistent kann gerade nicht antworten. Ihre Nachricht ist "
        "gespeichert und eine Person aus unserem Team kann sie sehen.",
        "pt": "Desculpe, o assistente não pode responder agora. A sua mensagem foi guardada e "
        "uma pessoa da nossa equipa pode vê-la.",
    },
    "interrupted": {
        "en": "Sorry, this answer was interrupted before it was complete. Your message is saved "
        "and a person from our team can see it.",
        "es": "Lo sentimos, esta respuesta se interrumpió antes de completarse. Tu mensaje está "
        "guardado y una persona de nuestro equipo puede verlo.",
        "fr": "Désolé, cette réponse a été interrompue avant la fin. Votre message est "
        "enregistré et une personne de notre équipe peut le voir.",
        "de": "Entschuldigung, diese Antwort wurde unterbrochen. Ihre Nachricht ist gespeichert "
        "und eine Person aus unserem Team kann sie sehen.",
        "pt": "Desculpe, esta resposta foi interrompida antes de terminar. A sua mensagem foi "
        "guardada e uma pessoa da nossa equipa pode vê-la.",
    },
    "usage_limit": {
        "en": "The assistant has reached its usage limit for now, so it can't write an answer. "
        "Your message is saved and a person from our team can see it.",
        "es": "El asistente ha alcanzado su límite de uso por ahora y no puede escribir una "
        "respuesta. Tu mensaje está guardado y una persona de nuestro equipo puede verlo.",
        "fr": "L'assistant a atteint sa limite d'utilisation pour le moment et ne peut pas "
        "rédiger de réponse. Votre message est enregistré et une personne de notre équipe "
        "peut le voir.",
        "de": "Der Assistent hat sein Nutzungslimit vorerst erreicht und kann keine Antwort "
        "schreiben. Ihre Nachricht ist gespeichert und eine Person aus unserem Team kann sie "
        "sehen.",
        "pt": "O assistente atingiu o seu limite de utilização por agora e não pode escrever "
        "uma resposta. A sua mensagem foi guardada e uma pessoa da nossa equipa pode vê-la.",
    },
    "handoff": {
        "en": "I've asked a person from our team to join this conversation. They'll reply here.",
        "es": "He pedido a una persona de nuestro equipo que se una a esta conversación. "
        "Te responderá aquí.",
        "fr": "J'ai demandé à une personne de notre équipe de rejoindre cette conversation. "
        "Elle vous répondra ici.",
        "de": "Ich habe eine Person aus unserem Team gebeten, dieses Gespräch zu übernehmen. "
        "Sie antwortet hier.",
        "pt": "Pedi a uma pessoa da nossa equipa que se junte a esta conversa. Ela vai "
        "responder aqui.",
    },
    "handoff_offer": {
        "en": "I can't help with this right now. Would you like a person from our team to take "
        "over? Just say so and I'll ask them to join.",
        "es": "Ahora mismo no puedo ayudarte con esto. ¿Quieres que una persona de nuestro "
        "equipo se encargue? Dímelo y se lo pediré.",
        "fr": "Je ne peux pas vous aider pour le moment. Voulez-vous qu'une personne de notre "
        "équipe prenne le relais ? Dites-le et je la préviens.",
        "de": "Ich kann Ihnen gerade nicht weiterhelfen. Möchten Sie, dass eine Person aus "
        "unserem Team übernimmt? Sagen Sie es einfach.",
        "pt": "Agora não consigo ajudar com isto. Quer que uma pessoa da nossa equipa assuma? "
        "É só dizer e eu peço-lhe.",
    },
    "knowledge_quote": {
        "en": "Here is what our help centre says:",
        "es": "Esto es lo que dice nuestro centro de ayuda:",
        "fr": "Voici ce que dit notre centre d'aide :",
        "de": "Das steht dazu in unserem Hilfe-Center:",
        "pt": "Eis o que diz o nosso centro de ajuda:",
    },
    "agent_joined": {
        "en": "{name} from our team has joined the conversation.",
        "es": "{name}, de nuestro equipo, se ha unido a la conversación.",
        "fr": "{name}, de notre équipe, a rejoint la conversation.",
        "de": "{name} aus unserem Team ist dem Gespräch beigetreten.",
        "pt": "{name}, da nossa equipa, juntou-se à conversa.",
    },
    "agent_joined_unnamed": {
        "en": "A support agent from our team has joined the conversation.",
        "es": "Un agente de soporte de nuestro equipo se ha unido a la conversación.",
        "fr": "Un agent du support de notre équipe a rejoint la conversation.",
        "de": "Ein Support-Mitarbeiter aus unserem Team ist dem Gespräch beigetreten.",
        "pt": "Um agente de apoio da nossa equipa juntou-se à conversa.",
    },
    "handed_back": {
        "en": "You're chatting with our assistant again.",
        "es": "Vuelves a hablar con nuestro asistente.",
        "fr": "Vous discutez de nouveau avec notre assistant.",
        "de": "Sie schreiben wieder mit unserem Assistenten.",
        "pt": "Está novamente a falar com o nosso assistente.",
    },
    "person_first_wait": {
        "en": "A person from our team will be with you shortly. If no one is free within "
        "{minutes} minutes, our assistant will answer.",
        "es": "Una persona de nuestro equipo te atenderá en breve. Si nadie está disponible en "
        "{minutes} minutos, te responderá nuestro asistente.",
        "fr": "Une personne de notre équipe va vous répondre sous peu. Si personne n'est "
        "disponible d'ici {minutes} minutes, notre assistant vous répondra.",
        "de": "Gleich ist eine Person aus unserem Team für Sie da. Wenn innerhalb von {minutes} "
        "Minuten niemand frei ist, antwortet unser Assistent.",
        "pt": "Uma pessoa da nossa equipa vai atendê-lo em breve. Se ninguém estiver disponível "
        "dentro de {minutes} minutos, o nosso assistente responderá.",
    },
    "person_first_wait_one": {
        "en": "A person from our team will be with you shortly. If no one is free within a "
        "minute, our assistant will answer.",
        "es": "Una persona de nuestro equipo te atenderá en breve. Si nadie está disponible en "
        "un minuto, te responderá nuestro asistente.",
        "fr": "Une personne de notre équipe va vous répondre sous peu. Si personne n'est "
        "disponible d'ici une minute, notre assistant vous répondra.",
        "de": "Gleich ist eine Person aus unserem Team für Sie da. Wenn innerhalb einer Minute "
        "niemand frei ist, antwortet unser Assistent.",
        "pt": "Uma pessoa da nossa equipa vai atendê-lo em breve. Se ninguém estiver disponível "
        "dentro de um minuto, o nosso assistente responderá.",
    },
    "person_first_released": {
        "en": "No one from our team was free, so our assistant will answer now. A person can "
        "still join the conversation.",
        "es": "No había nadie de nuestro equipo disponible, así que ahora te responderá nuestro "
        "asistente. Una persona todavía puede unirse a la conversación.",
        "fr": "Personne de notre équipe n'était disponible : notre assistant va donc vous "
        "répondre. Une personne peut encore rejoindre la conversation.",
        "de": "Niemand aus unserem Team war frei, deshalb antwortet jetzt unser Assistent. Eine "
        "Person kann dem Gespräch weiterhin beitreten.",
        "pt": "Ninguém da nossa equipa estava disponível, por isso o nosso assistente vai "
        "responder agora. Uma pessoa ainda pode juntar-se à conversa.",
    },
    "person_first_closed": {
        "en": "Our team isn't available right now, so our assistant will answer. A person from "
        "our team can see this conversation later.",
        "es": "Nuestro equipo no está disponible ahora, así que te responderá nuestro asistente. "
        "Una persona de nuestro equipo podrá ver esta conversación más tarde.",
        "fr": "Notre équipe n'est pas disponible pour le moment : notre assistant va donc vous "
        "répondre. Une personne de notre équipe pourra voir cette conversation plus tard.",
        "de": "Unser Team ist gerade nicht erreichbar, deshalb antwortet unser Assistent. Eine "
        "Person aus unserem Team kann dieses Gespräch später sehen.",
        "pt": "A nossa equipa não está disponível agora, por isso o nosso assistente vai "
        "responder. Uma pessoa da nossa equipa poderá ver esta conversa mais tarde.",
    },
    "closed": {
        "en": "This conversation was closed. Write again any time to start a new one.",
        "es": "Esta conversación se ha cerrado. Escríbenos cuando quieras para empezar otra.",
        "fr": "Cette conversation est close. Écrivez-nous à tout moment pour en commencer une "
        "autre.",
        "de": "Dieses Gespräch wurde beendet. Schreiben Sie jederzeit, um ein neues zu beginnen.",
        "pt": "Esta conversa foi encerrada. Escreva quando quiser para começar outra.",
    },
    "moderated_input": {
        "en": "Sorry, I can't respond to that message. If you need help with something else, "
        "I'm happy to help, or a person from our team can take over.",
        "es": "Lo siento, no puedo responder a ese mensaje. Si necesitas ayuda con otra cosa, "
        "con gusto te ayudo, o una persona de nuestro equipo puede encargarse.",
        "fr": "Désolé, je ne peux pas répondre à ce message. Si vous avez besoin d'aide pour "
        "autre chose, je suis là, ou une personne de notre équipe peut prendre le relais.",
        "de": "Entschuldigung, auf diese Nachricht kann ich nicht antworten. Wenn Sie bei etwas "
        "anderem Hilfe brauchen, helfe ich gern, oder eine Person aus unserem Team übernimmt.",
        "pt": "Desculpe, não posso responder a essa mensagem. Se precisar de ajuda com outra "
        "coisa, terei todo o gosto em ajudar, ou uma pessoa da nossa equipa pode assumir.",
    },
    "moderated_reply": {
        "en": "This answer was withheld because it did not meet our content guidelines. A person "
        "from our team can help: just ask.",
        "es": "Esta respuesta se retuvo porque no cumplía nuestras normas de contenido. Una "
        "persona de nuestro equipo puede ayudarte: solo pídelo.",
        "fr": "Cette réponse a été retenue car elle ne respectait pas nos règles de contenu. Une "
        "personne de notre équipe peut vous aider : il suffit de le demander.",
        "de": "Diese Antwort wurde zurückgehalten, weil sie unseren Inhaltsrichtlinien nicht "
        "entsprach. Eine Person aus unserem Team kann helfen: fragen Sie einfach.",
        "pt": "Esta resposta foi retida porque não cumpria as nossas regras de conteúdo. Uma "
        "pessoa da nossa equipa pode ajudar: é só pedir.",
    },
    "sensitive_refuse": {
        "en": "I can't give advice on {topic} questions. Would you like a person from our team to "
        "take over? Just say so and I'll ask them to join.",
        "es": "No puedo dar consejos sobre cuestiones de {topic}. ¿Quieres que una persona de "
        "nuestro equipo se encargue? Dímelo y se lo pediré.",
        "fr": "Je ne peux pas donner de conseils sur les questions de {topic}. Voulez-vous "
        "qu'une personne de notre équipe prenne le relais ? Dites-le et je la préviens.",
        "de": "Zu Fragen zum Thema {topic} kann ich keine Beratung geben. Möchten Sie, dass eine "
        "Person aus unserem Team übernimmt? Sagen Sie es einfach.",
        "pt": "Não posso dar conselhos sobre questões de {topic}. Quer que uma pessoa da nossa "
        "equipa assuma? É só dizer e eu peço-lhe.",
    },
    "sensitive_disclaimer": {
        "en": "This is general information about {topic}, not professional advice. For your "
        "own situation, please consult a qualified professional.",
        "es": "Esta es información general sobre {topic}, no asesoramiento profesional. Para tu "
        "caso concreto, consulta a un profesional cualificado.",
        "fr": "Ceci est une information générale sur {topic}, pas un conseil professionnel. "
        "Pour votre situation, consultez un professionnel qualifié.",
        "de": "Dies ist eine allgemeine Information zum Thema {topic}, keine fachliche Beratung. "
        "Wenden Sie sich für Ihre Situation an eine qualifizierte Fachperson.",
        "pt": "Isto é informação geral sobre {topic}, não aconselhamento profissional. Para a "
        "sua situação, consulte um profissional qualificado.",
    },
}


def notice(key: str, language: str = "", **values: str) -> str:
    """The notice `key` in `language` (English when there is no translation)."""
    texts = NOTICES[key]
    text = texts.get((language or "en")[:2].lower(), texts["en"])
    return text.format(**values) if values else text


# --- Message channels (email, Telegram, WhatsApp, Slack, SMS) --------------------------------
# What a channel contact is told when the assistant cannot simply answer: content it cannot
# read, the consent question (asked before anything they write is used), a decline noted,
# messages sent faster than the per-visitor limit, and a message cut to the tenant's length limit.
NOTICES.update(
    {
        "unreadable": {
            "en": "Thanks! I can only read text, so I can't open images, voice messages or "
            "files. A person from our team can see what you sent. If you can, please describe "
            "it in words.",
            "es": "¡Gracias! Solo puedo leer texto, así que no puedo abrir imágenes, mensajes de "
            "voz ni archivos. Una persona de nuestro equipo puede ver lo que enviaste. Si puedes, "
            "descríbelo con palabras.",
            "fr": "Merci ! Je ne peux lire que du texte : je ne peux pas ouvrir les images, les "
            "messages vocaux ni les fichiers. Une personne de notre équipe peut voir ce que vous "
            "avez envoyé. Si possible, décrivez-le avec des mots.",
            "de": "Danke! Ich kann nur Text lesen, daher kann ich keine Bilder, Sprachnachrichten "
            "oder Dateien öffnen. Eine Person aus unserem Team kann sehen, was Sie gesendet "
            "haben. Wenn möglich, beschreiben Sie es bitte in Worten.",
            "pt": "Obrigado! Só consigo ler texto, por isso não consigo abrir imagens, mensagens "
            "de voz nem ficheiros. Uma pessoa da nossa equipa pode ver o que enviou. Se puder, "
            "descreva-o por palavras.",
        },
        "channel_consent_question": {
            "en": "{text}{privacy}\n\nDo you agree? Reply YES to continue or NO to decline.",
            "es": "{text}{privacy}\n\n¿Estás de acuerdo? Responde SÍ para continuar o NO para "
            "rechazar.",
            "fr": "{text}{privacy}\n\nÊtes-vous d'accord ? Répondez OUI pour continuer ou NON "
            "pour refuser.",
            "de": "{text}{privacy}\n\nSind Sie einverstanden? Antworten Sie JA, um fortzufahren, "
            "oder NEIN, um abzulehnen.",
            "pt": "{text}{privacy}\n\nConcorda? Responda SIM para continuar ou NÃO para recusar.",
        },
        "channel_privacy_link": {
            "en": "\n\nPrivacy policy: {url}",
            "es": "\n\nPolítica de privacidad: {url}",
            "fr": "\n\nPolitique de confidentialité : {url}",
            "de": "\n\nDatenschutzerklärung: {url}",
            "pt": "\n\nPolítica de privacidade: {url}",
        },
        "channel_consent_declined": {
            "en": "Understood. What you wrote has been deleted and won't be used. Write again "
            "any time if you change your mind.",
            "es": "Entendido. Lo que escribiste se ha borrado y no se usará. Escríbenos cuando "
            "quieras si cambias de opinión.",
            "fr": "C'est noté. Ce que vous avez écrit a été supprimé et ne sera pas utilisé. "
            "Écrivez-nous à tout moment si vous changez d'avis.",
            "de": "Verstanden. Was Sie geschrieben haben, wurde gelöscht und wird nicht "
            "verwendet. Schreiben Sie jederzeit, wenn Sie es sich anders überlegen.",
            "pt": "Entendido. O que escreveu foi apagado e não será usado. Escreva quando quiser "
            "se mudar de ideias.",
        },
        "channel_too_long": {
            "en": "Your message was longer than we can take, so only its beginning was kept. "
            "If something is missing, please send it in a shorter message.",
            "es": "Tu mensaje era más largo de lo que podemos recibir, así que solo se guardó el "
            "principio. Si falta algo, envíalo en un mensaje más corto.",
            "fr": "Votre message était plus long que ce que nous pouvons recevoir : seul son "
            "début a été conservé. S'il manque quelque chose, envoyez-le dans un message plus "
            "court.",
            "de": "Ihre Nachricht war länger, als wir annehmen können, daher wurde nur ihr Anfang "
            "behalten. Wenn etwas fehlt, senden Sie es bitte in einer kürzeren Nachricht.",
            "pt": "A sua mensagem era mais longa do que conseguimos receber, por isso só o início "
            "foi guardado. Se faltar algo, envie-o numa mensagem mais curta.",
        },
        "channel_rate_limited": {
            "en": "You're sending messages faster than we can take them, so your last messages "
            "were not received. Please wait a minute and write again.",
            "es": "Estás enviando mensajes más rápido de lo que podemos recibirlos, así que tus "
            "últimos mensajes no se recibieron. Espera un minuto y vuelve a escribir.",
            "fr": "Vous envoyez des messages plus vite que nous ne pouvons les recevoir : vos "
            "derniers messages n'ont pas été reçus. Attendez une minute et écrivez de nouveau.",
            "de": "Sie senden Nachrichten schneller, als wir sie annehmen können, daher sind Ihre "
            "letzten Nachrichten nicht angekommen. Bitte warten Sie eine Minute und schreiben Sie "
            "erneut.",
            "pt": "Está a enviar mensagens mais depressa do que as conseguimos receber, por isso "
            "as suas últimas mensagens não foram recebidas. Aguarde um minuto e escreva de novo.",
        },
    }
)
