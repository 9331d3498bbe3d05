// What the widget says about the assistant, and who the visitor talks to first.
//
// - The AI disclosure: a line above the input saying plainly that the visitor is talking to an
//   AI assistant, in the widget's language (the tenant's text, else the default).
// - The conversation mode (`welcome.assistant.mode`, or the frame's data- attributes before the
//   socket is up): "assistant_first", "person_first" or "visitor_decides". In "visitor_decides"
//   the visitor chooses before the first message: "Ask the assistant" / "Talk to a person"; the
//   choice goes with that message as its `route`.
//
// All text goes in through textContent.

export const MODES = Object.freeze(["assistant_first", "person_first", "visitor_decides"]);
export const ROUTES = Object.freeze(["assistant", "person"]);

const MAX_DISCLOSURE_CHARS = 500;
const LANGUAGE = /^[a-z]{2,3}(-[a-z0-9]{1,8})?$/;

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function cleanText(value) {
  return typeof value === "string" ? value.replace(/\s+/g, " ").trim().slice(0, MAX_DISCLOSURE_CHARS) : "";
}

/**
 * What the server says about the assistant (`welcome.assistant`): {mode, disclosure,
 * disclosures: {lang: text}, waitMinutes, teamAvailable}. Fields missing or malformed in `raw`
 * keep their value from `previous`; null when there is nothing usable.
 */
export function parseAssistant(raw, previous = null) {
  if (!isObject(raw)) return previous;
  const next = previous
    ? { ...previous, disclosures: { ...previous.disclosures } }
    : { mode: "assistant_first", disclosure: "", disclosures: {}, waitMinutes: null, teamAvailable: true };
  if (MODES.includes(raw.mode)) next.mode = raw.mode;
  if (typeof raw.disclosure === "string") next.disclosure = cleanText(raw.disclosure);
  if (isObject(raw.disclosures)) {
    next.disclosures = {};
    for (const [lang, text] of Object.entries(raw.disclosures)) {
      const code = String(lang).toLowerCase();
      if (LANGUAGE.test(code) && cleanText(text)) next.disclosures[code] = cleanText(text);
    }
  }
  if (Number.isInteger(raw.wait_minutes) && raw.wait_minutes > 0) next.waitMinutes = raw.wait_minutes;
  if (typeof raw.team_available === "boolean") next.teamAvailable = raw.team_available;
  return next;
}

/** The frame page's data- attributes (data-conversation-mode, data-ai-disclosures), or null. */
export function assistantFromDataset(data) {
  let disclosures = null;
  try {
    disclosures = JSON.parse(data.aiDisclosures || "null");
  } catch {
    disclosures = null;
  }
  if (!data.conversationMode && !isObject(disclosures)) return null;
  return parseAssistant({ mode: data.conversationMode, disclosures: isObject(disclosures) ? disclosures : {} });
}

/** The disclosure in the widget's language `lang`; the widget's own default when the server said none. */
export function disclosureIn(assistant, t) {
  const lang = String(t._lang || "en").toLowerCase();
  const texts = assistant?.disclosures || {};
  return texts[lang] || texts[lang.split("-")[0]] || assistant?.disclosure || t.aiDisclosure;
}

/** The string table with the header and the empty state saying what the mode does. */
export function withModeStrings(t, mode) {
  if (mode === "person_first") {
    return Object.freeze({ ...t, subtitle: t.subtitlePersonFirst, emptyBody: t.emptyBodyPersonFirst });
  }
  if (mode === "visitor_decides") {
    return Object.freeze({ ...t, subtitle: t.subtitleVisitorDecides, emptyBody: t.emptyBodyVisitorDecides });
  }
  return t;
}

/**
 * The disclosure line and the choice, drawn into `slot` (above the input). While the visitor
 * has to choose, the app root carries data-choice="pending" (the stylesheet hides the input
 * until then); once chosen, "made"; without a choice to make, no attribute.
 *
 * options: {root, slot, t, format(template, values), onChoose(route)}
 */
export class AssistantPanel {
  constructor({ root, slot, t, format, onChoose }) {
    this.root = root;
    this.t = t;
    this.format = format;
    this.onChoose = onChoose;
    this.assistant = null;
    this.route = null; // the visitor's choice, until their first message takes it along
    this.written = false; // the visitor has written in this conversation: nothing to choose

    this.choice = el("div", "sb-choice");
    this.choice.setAttribute("role", "group");
    this.prompt = el("p", "sb-choice__prompt");
    this.prompt.id = "sb-choice-prompt";
    this.choice.setAttribute("aria-labelledby", this.prompt.id);
    const options = el("div", "sb-choice__options");
    this.buttons = {};
    for (const route of ROUTES) {
      const button = el("button", `sb-choice__option sb-choice__option--${route}`);
      button.type = "button";
      button.dataset.route = route;
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => this.choose(route));
      this.buttons[route] = button;
      options.appendChild(button);
    }
    this.note = el("p", "sb-choice__note");
    this.choice.append(this.prompt, options, this.note);

    this.disclosure = el("p", "sb-disclosure");
    this.disclosure.id = "sb-disclosure";
    slot.append(this.choice, this.disclosure);
    this.update();
  }

  setStrings(t) {
    this.t = t;
    this.update();
  }

  setAssistant(assistant) {
    this.assistant = assistant;
    this.update();
  }

  /** Whether the visitor has written in this conversation (a conversation started over: false). */
  setWritten(written) {
    if (this.written === Boolean(written)) return;
    this.written = Boolean(written);
    if (!this.written) this.route = null;
    this.update();
  }

  get choosing() {
    return this.assistant?.mode === "visitor_decides" && !this.written;
  }

  choose(route) {
    if (!this.choosing || !ROUTES.includes(route)) return;
    this.route = route;
    this.update();
    this.onChoose?.(route);
  }

  /** Extra fields of the message being sent: the route chosen, on the first message only. */
  messageFields() {
    return this.choosing && this.route ? { route: this.route } : {};
  }

  update() {
    const { t } = this;
    const assistant = this.assistant;
    this.disclosure.textContent = disclosureIn(assistant, t);

    const choosing = this.choosing;
    this.choice.hidden = !choosing;
    if (choosing) this.root.dataset.choice = this.route ? "made" : "pending";
    else delete this.root.dataset.choice;
    this.prompt.textContent = t.choicePrompt;
    this.buttons.assistant.textContent = t.choiceAssistant;
    this.buttons.person.textContent = t.choicePerson;
    for (const route of ROUTES) this.buttons[route].setAttribute("aria-pressed", String(this.route === route));

    let note = "";
    if (choosing && this.route === "person") {
      note = assistant?.teamAvailable === false
        ? t.choiceTeamAway
        : this.format(t.choicePersonNote, { count: assistant?.waitMinutes || 5 });
    }
    this.note.textContent = note;
    this.note.hidden = !note;
  }
}
