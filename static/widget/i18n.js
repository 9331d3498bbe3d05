// Every string the widget shows, keyed by language. The one place to translate the widget.
//
// This file is loaded two ways, so it has no `import`/`export`:
//   - by the iframe app as a module (`import "./i18n.js"`), and
//   - by loader.js as a classic script on the customer's page (for the launcher's labels).
// Both read the frozen table it publishes on `globalThis.SupportbotWidgetI18n`.
//
// Placeholders look like {name}; `format()` fills them. A string that depends on a number is an
// object of plural forms ({one, other}), chosen by the `count` or `seconds` value.
//
// The tone follows the service's own notices (conversations/notices.py): "tú" in Spanish, "vous"
// in French, "Sie" in German, European Portuguese. Keep every language's keys and placeholders
// the same as English (tests/browser/test_i18n.py checks).
(function publish(root) {
  "use strict";
  if (root.SupportbotWidgetI18n) return;

  const STRINGS = {
    en: {
      // Launcher (customer's page)
      launcherOpen: "Open support chat",
      launcherClose: "Close support chat",
      frameTitle: "Support chat",

      // Header
      defaultTitle: "Support",
      chatWith: "Chat with {name}",
      subtitle: "Our assistant answers right away. A person from the team can join.",
      close: "Close chat",

      // Message list and roles
      messagesLabel: "Conversation",
      you: "You",
      assistant: "Assistant",
      agent: "Support team",
      agentNamed: "{name} · Support team",
      typing: "The assistant is typing…",
      sources: "Sources",
      sourcesLead: "Sources:",
      emptyTitle: "Hi! How can we help?",
      emptyBody: "Ask a question and the assistant will answer here.",

      // A person from the team
      talkToPerson: "Talk to a person",
      talkToPersonPending: "Asking the team…",
      waitingForAgent: "A person from our team will join shortly.",
      withAgent: "You're chatting with a person from our team.",
      withAgentNamed: "You're chatting with {name} from our team.",
      conversationClosed: "This conversation was closed. Write here any time to continue it.",
      handoffFailed: "We could not reach the team just now. Please try again.",

      // The assistant: the AI disclosure and who answers first (assistant.js)
      aiDisclosure: "You're chatting with an AI assistant. Its answers can contain mistakes; you can ask for a person at any time.",
      subtitlePersonFirst: "A person from the team answers first; our assistant helps when no one is free.",
      subtitleVisitorDecides: "Ask our assistant, or talk to a person from the team.",
      emptyBodyPersonFirst: "Write your question and a person from the team will answer here.",
      emptyBodyVisitorDecides: "Choose who you would like to talk to, then write your question.",
      choicePrompt: "How would you like to start?",
      choiceAssistant: "Ask the assistant",
      choicePerson: "Talk to a person",
      choicePersonNote: {
        one: "A person from the team will answer. If no one is free within {count} minute, our assistant will.",
        other: "A person from the team will answer. If no one is free within {count} minutes, our assistant will.",
      },
      choiceTeamAway: "Our team isn't available right now, so our assistant will answer.",

      // Composer
      inputLabel: "Your message",
      inputPlaceholder: "Type your question…",
      send: "Send",
      keyboardHint: "Enter to send, Shift+Enter for a new line",
      charactersLeft: { one: "{count} character left", other: "{count} characters left" },
      overLimit: {
        one: "{count} character over the limit",
        other: "{count} characters over the limit",
      },

      // Message states
      sending: "Sending…",
      notSent: "Not sent",
      retry: "Try again",
      replyFailed:
        "The assistant could not finish this reply. Your message is saved and a person from the team can see it.",

      // Error frames
      errorBadRequest: "This message could not be sent. Please try again.",
      errorTooLong: "This message is too long. Please shorten it and send it again.",
      errorRateLimited: {
        one: "You are sending messages too quickly. Please wait {seconds} second and try again.",
        other: "You are sending messages too quickly. Please wait {seconds} seconds and try again.",
      },
      errorRateLimitedShort: "You are sending messages too quickly. Please wait a moment and try again.",
      errorUnavailable:
        "The assistant cannot answer right now. Your message is saved and a person from the team can see it.",
      errorGeneric: "Something went wrong. Please try again.",
      earlierNotShown: "Earlier messages are not shown here.",
      outboxFull: "{count} messages are still waiting to be sent. Please wait until you're back online before writing more.",

      // Connection and close codes
      connecting: "Connecting…",
      reconnecting: "Connection lost. Reconnecting…",
      reconnectingIn: "Connection lost. Trying again in {seconds} seconds…",
      startFailed: "The chat could not start. Trying again…",
      busy: "Too many chat windows are open. Trying again in {seconds} seconds…",
      refused: "This chat is not available on this website. Please contact the company another way.",
      startOver: "Start a new conversation",
      consentAccept: "Accept",
      consentDecline: "Decline",
      consentPrivacy: "Privacy policy",
      consentDeclined: "Without your consent we can't keep this conversation, so the chat stays closed. You can accept at any time.",
      errorConsentRequired: "Please accept the text above first: nothing is kept until you do.",
      errorConsentStale: "The privacy text has changed. Please read it again.",
      menu: "More options",
      deleteMyData: "Delete my data / withdraw consent",
      deleteConfirm: "Delete this conversation and everything stored about you? This cannot be undone.",
      dataDeleted: "Your data was deleted. You can start a new conversation.",
      offline: "You are offline. Your messages will be sent when the connection is back.",
    },

    es: {
      launcherOpen: "Abrir el chat de ayuda",
      launcherClose: "Cerrar el chat de ayuda",
      frameTitle: "Chat de ayuda",

      defaultTitle: "Ayuda",
      chatWith: "Chat con {name}",
      subtitle: "El asistente responde al momento. Alguien del equipo puede unirse.",
      close: "Cerrar el chat",

      messagesLabel: "Conversación",
      you: "Tú",
      assistant: "Asistente",
      agent: "Equipo de soporte",
      agentNamed: "{name} · Equipo de soporte",
      typing: "El asistente está escribiendo…",
      sources: "Fuentes",
      sourcesLead: "Fuentes:",
      emptyTitle: "¡Hola! ¿En qué podemos ayudarte?",
      emptyBody: "Haz una pregunta y el asistente te responderá aquí.",

      talkToPerson: "Hablar con una persona",
      talkToPersonPending: "Avisando al equipo…",
      waitingForAgent: "Una persona de nuestro equipo se unirá en breve.",
      withAgent: "Estás hablando con una persona de nuestro equipo.",
      withAgentNamed: "Estás hablando con {name}, de nuestro equipo.",
      conversationClosed: "Esta conversación se cerró. Escribe aquí cuando quieras para continuarla.",
      handoffFailed: "Ahora no hemos podido avisar al equipo. Inténtalo de nuevo.",

      // The assistant: the AI disclosure and who answers first (assistant.js)
      aiDisclosure: "Estás hablando con un asistente de IA. Sus respuestas pueden contener errores; puedes pedir hablar con una persona en cualquier momento.",
      subtitlePersonFirst: "Primero responde una persona del equipo; nuestro asistente ayuda cuando no hay nadie disponible.",
      subtitleVisitorDecides: "Pregunta a nuestro asistente o habla con una persona del equipo.",
      emptyBodyPersonFirst: "Escribe tu pregunta y una persona del equipo te responderá aquí.",
      emptyBodyVisitorDecides: "Elige con quién quieres hablar y escribe tu pregunta.",
      choicePrompt: "¿Cómo quieres empezar?",
      choiceAssistant: "Preguntar al asistente",
      choicePerson: "Hablar con una persona",
      choicePersonNote: {
        one: "Te responderá una persona del equipo. Si nadie está disponible en {count} minuto, te responderá nuestro asistente.",
        other: "Te responderá una persona del equipo. Si nadie está disponible en {count} minutos, te responderá nuestro asistente.",
      },
      choiceTeamAway: "Nuestro equipo no está disponible ahora, así que te responderá nuestro asistente.",

      inputLabel: "Tu mensaje",
      inputPlaceholder: "Escribe tu pregunta…",
      send: "Enviar",
      keyboardHint: "Intro para enviar, Mayús+Intro para una línea nueva",
      charactersLeft: { one: "Queda {count} carácter", other: "Quedan {count} caracteres" },
      overLimit: { one: "Sobra {count} carácter", other: "Sobran {count} caracteres" },

      sending: "Enviando…",
      notSent: "No enviado",
      retry: "Reintentar",
      replyFailed:
        "El asistente no pudo terminar esta respuesta. Tu mensaje está guardado y una persona del equipo puede verlo.",

      errorBadRequest: "No se pudo enviar este mensaje. Inténtalo de nuevo.",
      errorTooLong: "Este mensaje es demasiado largo. Acórtalo y vuelve a enviarlo.",
      errorRateLimited: {
        one: "Estás enviando mensajes demasiado rápido. Espera {seconds} segundo y vuelve a intentarlo.",
        other: "Estás enviando mensajes demasiado rápido. Espera {seconds} segundos y vuelve a intentarlo.",
      },
      errorRateLimitedShort: "Estás enviando mensajes demasiado rápido. Espera un momento y vuelve a intentarlo.",
      errorUnavailable:
        "El asistente no puede responder ahora. Tu mensaje está guardado y una persona del equipo puede verlo.",
      errorGeneric: "Algo salió mal. Inténtalo de nuevo.",
      earlierNotShown: "Los mensajes anteriores no se muestran aquí.",
      outboxFull: "Hay {count} mensajes esperando a enviarse. Espera a recuperar la conexión antes de escribir más.",

      connecting: "Conectando…",
      reconnecting: "Se perdió la conexión. Reconectando…",
      reconnectingIn: "Se perdió la conexión. Nuevo intento en {seconds} segundos…",
      startFailed: "El chat no pudo iniciarse. Reintentando…",
      busy: "Hay demasiadas ventanas de chat abiertas. Nuevo intento en {seconds} segundos…",
      refused: "Este chat no está disponible en este sitio web. Contacta con la empresa por otra vía.",
      startOver: "Empezar una conversación nueva",
      consentAccept: "Aceptar",
      consentDecline: "Rechazar",
      consentPrivacy: "Política de privacidad",
      consentDeclined: "Sin tu consentimiento no podemos guardar esta conversación, así que el chat queda cerrado. Puedes aceptar cuando quieras.",
      errorConsentRequired: "Acepta primero el texto de arriba: no se guarda nada hasta que lo hagas.",
      errorConsentStale: "El texto de privacidad ha cambiado. Vuelve a leerlo.",
      menu: "Más opciones",
      deleteMyData: "Borrar mis datos / retirar el consentimiento",
      deleteConfirm: "¿Borrar esta conversación y todo lo guardado sobre ti? No se puede deshacer.",
      dataDeleted: "Tus datos se han borrado. Puedes empezar una conversación nueva.",
      offline: "No tienes conexión. Tus mensajes se enviarán cuando vuelva.",
    },

    fr: {
      launcherOpen: "Ouvrir le chat d’assistance",
      launcherClose: "Fermer le chat d’assistance",
      frameTitle: "Chat d’assistance",

      defaultTitle: "Assistance",
      chatWith: "Discuter avec {name}",
      subtitle: "Notre assistant répond tout de suite. L’équipe peut prendre le relais.",
      close: "Fermer le chat",

      messagesLabel: "Conversation",
      you: "Vous",
      assistant: "Assistant",
      agent: "Équipe d’assistance",
      agentNamed: "{name} · Équipe d’assistance",
      typing: "L’assistant écrit…",
      sources: "Sources",
      sourcesLead: "Sources\u00a0:",
      emptyTitle: "Bonjour\u00a0! Comment pouvons-nous vous aider\u00a0?",
      emptyBody: "Posez votre question, l’assistant vous répondra ici.",

      talkToPerson: "Parler à une personne",
      talkToPersonPending: "Demande en cours…",
      waitingForAgent: "Une personne de notre équipe va vous rejoindre sous peu.",
      withAgent: "Vous discutez avec une personne de notre équipe.",
      withAgentNamed: "Vous discutez avec {name}, de notre équipe.",
      conversationClosed: "Cette conversation est close. Écrivez ici quand vous voulez pour la poursuivre.",
      handoffFailed: "Impossible de joindre l’équipe pour le moment. Veuillez réessayer.",

      // The assistant: the AI disclosure and who answers first (assistant.js)
      aiDisclosure: "Vous discutez avec un assistant IA. Ses réponses peuvent contenir des erreurs ; vous pouvez demander à parler à une personne à tout moment.",
      subtitlePersonFirst: "Une personne de l’équipe répond d’abord ; notre assistant prend le relais si personne n’est disponible.",
      subtitleVisitorDecides: "Posez votre question à notre assistant ou parlez à une personne de l’équipe.",
      emptyBodyPersonFirst: "Écrivez votre question : une personne de l’équipe vous répondra ici.",
      emptyBodyVisitorDecides: "Choisissez à qui vous voulez parler, puis écrivez votre question.",
      choicePrompt: "Comment souhaitez-vous commencer ?",
      choiceAssistant: "Demander à l’assistant",
      choicePerson: "Parler à une personne",
      choicePersonNote: {
        one: "Une personne de l’équipe vous répondra. Si personne n’est disponible d’ici {count} minute, notre assistant vous répondra.",
        other: "Une personne de l’équipe vous répondra. Si personne n’est disponible d’ici {count} minutes, notre assistant vous répondra.",
      },
      choiceTeamAway: "Notre équipe n’est pas disponible pour le moment : notre assistant vous répondra.",

      inputLabel: "Votre message",
      inputPlaceholder: "Écrivez votre question…",
      send: "Envoyer",
      keyboardHint: "Entrée pour envoyer, Maj+Entrée pour aller à la ligne",
      charactersLeft: { one: "{count} caractère restant", other: "{count} caractères restants" },
      overLimit: { one: "{count} caractère de trop", other: "{count} caractères de trop" },

      sending: "Envoi…",
      notSent: "Non envoyé",
      retry: "Réessayer",
      replyFailed:
        "L’assistant n’a pas pu terminer cette réponse. Votre message est enregistré et une personne de l’équipe peut le voir.",

      errorBadRequest: "Ce message n’a pas pu être envoyé. Veuillez réessayer.",
      errorTooLong: "Ce message est trop long. Raccourcissez-le et renvoyez-le.",
      errorRateLimited: {
        one: "Vous envoyez des messages trop vite. Patientez {seconds} seconde et réessayez.",
        other: "Vous envoyez des messages trop vite. Patientez {seconds} secondes et réessayez.",
      },
      errorRateLimitedShort: "Vous envoyez des messages trop vite. Patientez un instant et réessayez.",
      errorUnavailable:
        "L’assistant ne peut pas répondre pour le moment. Votre message est enregistré et une personne de l’équipe peut le voir.",
      errorGeneric: "Un problème est survenu. Veuillez réessayer.",
      earlierNotShown: "Les messages précédents ne sont pas affichés ici.",
      outboxFull: "{count} messages attendent encore d’être envoyés. Attendez d’être reconnecté avant d’en écrire d’autres.",

      connecting: "Connexion…",
      reconnecting: "Connexion perdue. Reconnexion…",
      reconnectingIn: "Connexion perdue. Nouvel essai dans {seconds} secondes…",
      startFailed: "Le chat n’a pas pu démarrer. Nouvel essai…",
      busy: "Trop de fenêtres de chat sont ouvertes. Nouvel essai dans {seconds} secondes…",
      refused: "Ce chat n’est pas disponible sur ce site. Veuillez contacter l’entreprise autrement.",
      startOver: "Commencer une nouvelle conversation",
      consentAccept: "Accepter",
      consentDecline: "Refuser",
      consentPrivacy: "Politique de confidentialité",
      consentDeclined: "Sans votre consentement, nous ne pouvons pas conserver cette conversation : le chat reste fermé. Vous pouvez accepter à tout moment.",
      errorConsentRequired: "Veuillez d'abord accepter le texte ci-dessus : rien n'est conservé avant.",
      errorConsentStale: "Le texte de confidentialité a changé. Veuillez le relire.",
      menu: "Plus d'options",
      deleteMyData: "Supprimer mes données / retirer mon consentement",
      deleteConfirm: "Supprimer cette conversation et tout ce qui est conservé à votre sujet ? C'est irréversible.",
      dataDeleted: "Vos données ont été supprimées. Vous pouvez commencer une nouvelle conversation.",
      offline: "Vous êtes hors ligne. Vos messages partiront dès le retour de la connexion.",
    },

    de: {
      launcherOpen: "Support-Chat öffnen",
      launcherClose: "Support-Chat schließen",
      frameTitle: "Support-Chat",

      defaultTitle: "Support",
      chatWith: "Chat mit {name}",
      subtitle: "Unser Assistent antwortet sofort. Das Team kann dazukommen.",
      close: "Chat schließen",

      messagesLabel: "Unterhaltung",
      you: "Sie",
      assistant: "Assistent",
      agent: "Support-Team",
      agentNamed: "{name} · Support-Team",
      typing: "Der Assistent schreibt…",
      sources: "Quellen",
      sourcesLead: "Quellen:",
      emptyTitle: "Hallo! Wie können wir helfen?",
      emptyBody: "Stellen Sie eine Frage, der Assistent antwortet hier.",

      talkToPerson: "Mit einer Person sprechen",
      talkToPersonPending: "Team wird benachrichtigt…",
      waitingForAgent: "Gleich meldet sich eine Person aus unserem Team.",
      withAgent: "Sie schreiben mit einer Person aus unserem Team.",
      withAgentNamed: "Sie schreiben mit {name} aus unserem Team.",
      conversationClosed: "Dieses Gespräch wurde beendet. Schreiben Sie jederzeit hier, um es fortzusetzen.",
      handoffFailed: "Das Team ist gerade nicht erreichbar. Bitte versuchen Sie es erneut.",

      // The assistant: the AI disclosure and who answers first (assistant.js)
      aiDisclosure: "Sie chatten mit einem KI-Assistenten. Seine Antworten können Fehler enthalten; Sie können jederzeit nach einer Person fragen.",
      subtitlePersonFirst: "Zuerst antwortet eine Person aus dem Team; unser Assistent hilft, wenn niemand frei ist.",
      subtitleVisitorDecides: "Fragen Sie unseren Assistenten oder sprechen Sie mit einer Person aus dem Team.",
      emptyBodyPersonFirst: "Schreiben Sie Ihre Frage; eine Person aus dem Team antwortet hier.",
      emptyBodyVisitorDecides: "Wählen Sie, mit wem Sie sprechen möchten, und schreiben Sie dann Ihre Frage.",
      choicePrompt: "Wie möchten Sie beginnen?",
      choiceAssistant: "Den Assistenten fragen",
      choicePerson: "Mit einer Person sprechen",
      choicePersonNote: {
        one: "Eine Person aus dem Team antwortet. Wenn innerhalb von {count} Minute niemand frei ist, antwortet unser Assistent.",
        other: "Eine Person aus dem Team antwortet. Wenn innerhalb von {count} Minuten niemand frei ist, antwortet unser Assistent.",
      },
      choiceTeamAway: "Unser Team ist gerade nicht erreichbar, deshalb antwortet unser Assistent.",

      inputLabel: "Ihre Nachricht",
      inputPlaceholder: "Ihre Frage…",
      send: "Senden",
      keyboardHint: "Enter zum Senden, Umschalt+Enter für eine neue Zeile",
      charactersLeft: { one: "Noch {count} Zeichen", other: "Noch {count} Zeichen" },
      overLimit: { one: "{count} Zeichen zu viel", other: "{count} Zeichen zu viel" },

      sending: "Wird gesendet…",
      notSent: "Nicht gesendet",
      retry: "Erneut versuchen",
      replyFailed:
        "Der Assistent konnte diese Antwort nicht beenden. Ihre Nachricht ist gespeichert und eine Person aus dem Team kann sie sehen.",

      errorBadRequest: "Diese Nachricht konnte nicht gesendet werden. Bitte versuchen Sie es erneut.",
      errorTooLong: "Diese Nachricht ist zu lang. Bitte kürzen Sie sie und senden Sie sie erneut.",
      errorRateLimited: {
        one: "Sie senden zu schnell. Bitte warten Sie {seconds} Sekunde und versuchen Sie es erneut.",
        other: "Sie senden zu schnell. Bitte warten Sie {seconds} Sekunden und versuchen Sie es erneut.",
      },
      errorRateLimitedShort: "Sie senden zu schnell. Bitte warten Sie kurz und versuchen Sie es erneut.",
      errorUnavailable:
        "Der Assistent kann gerade nicht antworten. Ihre Nachricht ist gespeichert und eine Person aus dem Team kann sie sehen.",
      errorGeneric: "Etwas ist schiefgelaufen. Bitte versuchen Sie es erneut.",
      earlierNotShown: "Frühere Nachrichten werden hier nicht angezeigt.",
      outboxFull: "{count} Nachrichten warten noch auf den Versand. Bitte warten Sie, bis Sie wieder online sind, bevor Sie weitere schreiben.",

      connecting: "Verbindung wird hergestellt…",
      reconnecting: "Verbindung unterbrochen. Neuer Versuch…",
      reconnectingIn: "Verbindung unterbrochen. Neuer Versuch in {seconds} Sekunden…",
      startFailed: "Der Chat konnte nicht starten. Neuer Versuch…",
      busy: "Zu viele Chatfenster sind geöffnet. Neuer Versuch in {seconds} Sekunden…",
      refused:
        "Dieser Chat ist auf dieser Website nicht verfügbar. Bitte kontaktieren Sie das Unternehmen auf anderem Weg.",
      startOver: "Neues Gespräch beginnen",
      consentAccept: "Akzeptieren",
      consentDecline: "Ablehnen",
      consentPrivacy: "Datenschutzerklärung",
      consentDeclined: "Ohne Ihre Einwilligung können wir dieses Gespräch nicht speichern, daher bleibt der Chat geschlossen. Sie können jederzeit zustimmen.",
      errorConsentRequired: "Bitte akzeptieren Sie zuerst den Text oben: Bis dahin wird nichts gespeichert.",
      errorConsentStale: "Der Datenschutztext hat sich geändert. Bitte lesen Sie ihn erneut.",
      menu: "Weitere Optionen",
      deleteMyData: "Meine Daten löschen / Einwilligung widerrufen",
      deleteConfirm: "Dieses Gespräch und alles über Sie Gespeicherte löschen? Das kann nicht rückgängig gemacht werden.",
      dataDeleted: "Ihre Daten wurden gelöscht. Sie können ein neues Gespräch beginnen.",
      offline: "Sie sind offline. Ihre Nachrichten werden gesendet, sobald die Verbindung wieder da ist.",
    },

    pt: {
      launcherOpen: "Abrir o chat de apoio",
      launcherClose: "Fechar o chat de apoio",
      frameTitle: "Chat de apoio",

      defaultTitle: "Apoio",
      chatWith: "Chat com {name}",
      subtitle: "O assistente responde de imediato. Alguém da equipa pode juntar-se.",
      close: "Fechar o chat",

      messagesLabel: "Conversa",
      you: "Você",
      assistant: "Assistente",
      agent: "Equipa de apoio",
      agentNamed: "{name} · Equipa de apoio",
      typing: "O assistente está a escrever…",
      sources: "Fontes",
      sourcesLead: "Fontes:",
      emptyTitle: "Olá! Como podemos ajudar?",
      emptyBody: "Faça uma pergunta e o assistente responde aqui.",

      talkToPerson: "Falar com uma pessoa",
      talkToPersonPending: "A contactar a equipa…",
      waitingForAgent: "Uma pessoa da nossa equipa vai juntar-se em breve.",
      withAgent: "Está a falar com uma pessoa da nossa equipa.",
      withAgentNamed: "Está a falar com {name}, da nossa equipa.",
      conversationClosed: "Esta conversa foi encerrada. Escreva aqui quando quiser para a continuar.",
      handoffFailed: "Não foi possível contactar a equipa agora. Tente novamente.",

      // The assistant: the AI disclosure and who answers first (assistant.js)
      aiDisclosure: "Está a falar com um assistente de IA. As respostas podem conter erros; pode pedir para falar com uma pessoa a qualquer momento.",
      subtitlePersonFirst: "Primeiro responde uma pessoa da equipa; o nosso assistente ajuda quando ninguém está disponível.",
      subtitleVisitorDecides: "Pergunte ao nosso assistente ou fale com uma pessoa da equipa.",
      emptyBodyPersonFirst: "Escreva a sua pergunta e uma pessoa da equipa responderá aqui.",
      emptyBodyVisitorDecides: "Escolha com quem quer falar e depois escreva a sua pergunta.",
      choicePrompt: "Como quer começar?",
      choiceAssistant: "Perguntar ao assistente",
      choicePerson: "Falar com uma pessoa",
      choicePersonNote: {
        one: "Uma pessoa da equipa vai responder. Se ninguém estiver disponível dentro de {count} minuto, o nosso assistente responderá.",
        other: "Uma pessoa da equipa vai responder. Se ninguém estiver disponível dentro de {count} minutos, o nosso assistente responderá.",
      },
      choiceTeamAway: "A nossa equipa não está disponível agora, por isso o nosso assistente vai responder.",

      inputLabel: "A sua mensagem",
      inputPlaceholder: "Escreva a sua pergunta…",
      send: "Enviar",
      keyboardHint: "Enter para enviar, Shift+Enter para uma nova linha",
      charactersLeft: { one: "Falta {count} carácter", other: "Faltam {count} caracteres" },
      overLimit: { one: "{count} carácter acima do limite", other: "{count} caracteres acima do limite" },

      sending: "A enviar…",
      notSent: "Não enviada",
      retry: "Tentar novamente",
      replyFailed:
        "O assistente não conseguiu terminar esta resposta. A sua mensagem foi guardada e uma pessoa da equipa pode vê-la.",

      errorBadRequest: "Não foi possível enviar esta mensagem. Tente novamente.",
      errorTooLong: "Esta mensagem é demasiado longa. Encurte-a e envie-a novamente.",
      errorRateLimited: {
        one: "Está a enviar mensagens demasiado depressa. Aguarde {seconds} segundo e tente novamente.",
        other: "Está a enviar mensagens demasiado depressa. Aguarde {seconds} segundos e tente novamente.",
      },
      errorRateLimitedShort: "Está a enviar mensagens demasiado depressa. Aguarde um momento e tente novamente.",
      errorUnavailable:
        "O assistente não pode responder agora. A sua mensagem foi guardada e uma pessoa da equipa pode vê-la.",
      errorGeneric: "Algo correu mal. Tente novamente.",
      earlierNotShown: "As mensagens anteriores não são mostradas aqui.",
      outboxFull: "Há {count} mensagens à espera de envio. Aguarde até voltar a estar online antes de escrever mais.",

      connecting: "A ligar…",
      reconnecting: "Ligação perdida. A tentar novamente…",
      reconnectingIn: "Ligação perdida. Nova tentativa dentro de {seconds} segundos…",
      startFailed: "Não foi possível iniciar o chat. A tentar novamente…",
      busy: "Há demasiadas janelas de chat abertas. Nova tentativa dentro de {seconds} segundos…",
      refused: "Este chat não está disponível neste site. Contacte a empresa de outra forma.",
      startOver: "Começar uma nova conversa",
      consentAccept: "Aceitar",
      consentDecline: "Recusar",
      consentPrivacy: "Política de privacidade",
      consentDeclined: "Sem o seu consentimento não podemos guardar esta conversa, por isso o chat fica fechado. Pode aceitar a qualquer momento.",
      errorConsentRequired: "Aceite primeiro o texto acima: nada é guardado até o fazer.",
      errorConsentStale: "O texto de privacidade mudou. Leia-o novamente.",
      menu: "Mais opções",
      deleteMyData: "Apagar os meus dados / retirar o consentimento",
      deleteConfirm: "Apagar esta conversa e tudo o que está guardado sobre si? Não é possível anular.",
      dataDeleted: "Os seus dados foram apagados. Pode começar uma nova conversa.",
      offline: "Está sem ligação. As suas mensagens serão enviadas quando a ligação voltar.",
    },
  };

  const LANGUAGES = Object.freeze(Object.keys(STRINGS));

  // The language tag actually used for `locale` ("es-ES" -> "es", "pt-BR" -> "pt", unknown -> "en").
  function languageOf(locale) {
    const wanted = String(locale || "").trim().toLowerCase().replace(/_/g, "-");
    if (STRINGS[wanted]) return wanted;
    const base = wanted.split("-")[0];
    return STRINGS[base] ? base : "en";
  }

  // Whether `language` names one of the widget's languages ("es", "es-MX"), not the English fallback.
  function supports(language) {
    const base = String(language || "").trim().toLowerCase().replace(/_/g, "-").split("-")[0];
    return Object.prototype.hasOwnProperty.call(STRINGS, base);
  }

  // The table for `locale`; a string missing from a translation falls back to English.
  // The table says which language it is in `_lang`.
  function pick(locale) {
    const lang = languageOf(locale);
    return Object.freeze(Object.assign({}, STRINGS.en, STRINGS[lang], { _lang: lang }));
  }

  function pluralForm(lang, n) {
    try {
      return new Intl.PluralRules(lang).select(n);
    } catch (e) {
      return n === 1 ? "one" : "other";
    }
  }

  // Fill {placeholders}. `template` may be an object of plural forms, chosen by `values.count`
  // (or `values.seconds`) in `lang`.
  function format(template, values, lang) {
    let text = template;
    if (text && typeof text === "object") {
      // Written without ?. and ?? : this file also runs as a classic script on customers' pages.
      const n = Number(values && (values.count != null ? values.count : values.seconds));
      const form = Number.isFinite(n) ? pluralForm(lang || "en", n) : "other";
      text = text[form] != null ? text[form] : text.other;
    }
    return String(text).replace(/\{(\w+)\}/g, (whole, name) =>
      values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole,
    );
  }

  for (const table of Object.values(STRINGS)) {
    for (const value of Object.values(table)) if (value && typeof value === "object") Object.freeze(value);
    Object.freeze(table);
  }
  root.SupportbotWidgetI18n = Object.freeze({
    strings: Object.freeze(STRINGS),
    languages: LANGUAGES,
    pick,
    format,
    languageOf,
    supports,
  });
})(typeof globalThis !== "undefined" ? globalThis : window);
