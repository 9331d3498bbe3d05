// The consent or privacy notice (`welcome.consent`), shown above the input.
//
// - Lawful basis "consent" (`required`): a panel with the tenant's text, its privacy-policy link
//   and Accept / Decline, in place of the input, until the visitor accepts. Nothing is stored
//   (on the server or in this browser) before they accept or write.
// - "legitimate_interest": the text as a notice line, with the link; nothing to answer.
//
// The text goes in through textContent; the link only when it is an http(s) URL.

const MAX_TEXT_CHARS = 2000;
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** An http(s) URL as given, or "" (javascript:, data: and the rest are never linked). */
export function safeUrl(value) {
  if (typeof value !== "string" || !value) return "";
  try {
    const url = new URL(value);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : "";
  } catch {
    return "";
  }
}

/**
 * `welcome.consent` as the widget uses it: {required, version, text, privacyUrl, accepted,
 * declined}, or `previous` when `raw` is not usable.
 */
export function parseConsent(raw, previous = null) {
  if (!isObject(raw) || !Number.isInteger(raw.version)) return previous;
  return {
    required: raw.required === true,
    version: raw.version,
    text: typeof raw.text === "string" ? raw.text.trim().slice(0, MAX_TEXT_CHARS) : "",
    privacyUrl: safeUrl(raw.privacy_url),
    accepted: raw.accepted === true,
    declined: false,
  };
}

/**
 * Draws the consent into `slot`. While the visitor has to accept, the app root carries
 * data-consent="pending" (the stylesheet hides the input); otherwise no attribute.
 *
 * options: {root, slot, t, onDecide(decision, version)}
 */
export class ConsentPanel {
  constructor({ root, slot, t, onDecide, requiredBeforeWelcome = false }) {
    this.root = root;
    this.t = t;
    this.onDecide = onDecide;
    this.consent = null;
    this.requiredBeforeWelcome = requiredBeforeWelcome;

    this.box = el("div", "sb-consent");
    this.box.setAttribute("role", "region");
    this.text = el("p", "sb-consent__text");
    this.text.id = "sb-consent-text";
    this.box.setAttribute("aria-labelledby", this.text.id);
    this.link = el("a", "sb-consent__link");
    this.link.target = "_blank";
    this.link.rel = "noopener noreferrer";
    this.declined = el("p", "sb-consent__declined");
    this.buttons = el("div", "sb-consent__buttons");
    this.accept = el("button", "sb-consent__accept");
    this.accept.type = "button";
    this.accept.addEventListener("click", () => this.decide("accept"));
    this.decline = el("button", "sb-consent__decline");
    this.decline.type = "button";
    this.decline.addEventListener("click", () => this.decide("decline"));
    this.buttons.append(this.accept, this.decline);
    this.box.append(this.text, this.link, this.declined, this.buttons);
    slot.prepend(this.box);
    this.update();
  }

  setStrings(t) {
    this.t = t;
    this.update();
  }

  setConsent(consent) {
    this.consent = consent;
    this.update();
  }

  /** The server recorded a decision (`consent.recorded`). */
  recorded(decision) {
    if (!this.consent) return;
    this.consent = { ...this.consent, accepted: decision === "accept", declined: decision === "decline" };
    this.update();
  }

  /** Whether the visitor must still accept before writing. */
  get pending() {
    if (!this.consent) return this.requiredBeforeWelcome;
    return this.consent.required && !this.consent.accepted;
  }

  decide(decision) {
    if (!this.consent) return;
    this.onDecide?.(decision, this.consent.version);
  }

  update() {
    const { t, consent } = this;
    const pending = this.pending;
    if (pending) this.root.dataset.consent = "pending";
    else delete this.root.dataset.consent;
    const shown = Boolean(consent && consent.text && (pending || !consent.required));
    this.box.hidden = !shown;
    this.box.classList.toggle("sb-consent--notice", Boolean(consent && !consent.required));
    this.text.textContent = consent ? consent.text : "";
    const url = consent ? consent.privacyUrl : "";
    if (url) this.link.href = url;
    else this.link.removeAttribute("href");
    this.link.textContent = t.consentPrivacy;
    this.link.hidden = !url;
    this.buttons.hidden = !pending || !consent;
    this.accept.textContent = t.consentAccept;
    this.decline.textContent = t.consentDecline;
    this.declined.textContent = t.consentDeclined;
    this.declined.hidden = !(pending && consent && consent.declined);
  }
}
