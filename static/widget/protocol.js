// The widget's side of widget protocol v1: one websocket, `hello` first, resume after a drop.
//
// What survives a reload lives in localStorage under one entry per widget key (this iframe's own
// origin): the visitor token and conversation id from `welcome`, the messages already shown (so a
// reload resumes with `last_seq` and only receives what it missed), and the outbox of messages
// not yet acknowledged, which are sent again with the same `client_id` after a reconnect (the
// server makes that idempotent). Nothing is written there before the visitor's first message
// (or their consent, where the tenant asks for it): until then the session lives in memory (the
// server stores nothing before it either). When the server says the visitor's data was erased
// (`erased`), the entry is removed and the widget starts afresh.
// The outbox holds at most MAX_OUTBOX messages; past that, `send` refuses (the view says so).

export const CLOSE_BAD_HELLO = 4400;
export const CLOSE_REFUSED = 4403;
export const CLOSE_ERASED = 4410;
export const CLOSE_TOO_MANY = 4429;
export const CLOSE_RESUME = 4012; // the server lost frames for a moment: reconnect now and resume

export const MAX_FRAME_BYTES = 64 * 1024;
const CACHED_MESSAGES = 200;
export const MAX_OUTBOX = 10;
const WELCOME_TIMEOUT_MS = 10000;
const STREAM_FLOOR_TTL_MS = 15 * 60 * 1000;

// Reconnect delays: exponential, capped, with "equal jitter" (half fixed, half random).
export const BACKOFF = Object.freeze({ baseMs: 500, maxMs: 30000 });
export const BUSY_BACKOFF = Object.freeze({ baseMs: 5000, maxMs: 120000 }); // after 4429

export function backoffDelay(policy, attempt, random = Math.random) {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export function newClientId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The `sub` of a verified-identity token (a compact JWT signed by the customer's backend), read
 * without verifying it: only to tell whether the stored session belongs to the same person. The
 * server verifies every token. Null when there is no token or it cannot be read.
 */
export function identitySubject(token) {
  if (typeof token !== "string" || !token) return null;
  try {
    const part = token.split(".")[1] || "";
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    const claims = JSON.parse(json);
    return isObject(claims) && typeof claims.sub === "string" ? claims.sub : null;
  } catch {
    return null;
  }
}

export function socketUrl(wsPath, loc = location) {
  return (loc.protocol === "https:" ? "wss:" : "ws:") + "//" + loc.host + wsPath;
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const isFinal = (message) => message.status !== "streaming";

export const CONVERSATION_STATUSES = Object.freeze(["bot", "waiting_for_agent", "with_agent", "closed"]);

/**
 * The conversation's state as the server describes it (`welcome.conversation`,
 * `conversation.updated`): {status, language, agent: {name} | null}. Fields missing or malformed in
 * `raw` keep their value from `previous`. Null when there is nothing usable.
 */
export function parseConversation(raw, previous = null) {
  if (!isObject(raw)) return previous;
  const next = previous ? { ...previous } : { status: "bot", language: "", agent: null };
  if (typeof raw.status === "string" && raw.status) next.status = raw.status.slice(0, 40);
  if (typeof raw.language === "string") next.language = raw.language.trim().slice(0, 35);
  if ("agent" in raw) {
    const name = isObject(raw.agent) && typeof raw.agent.name === "string" ? raw.agent.name.trim().slice(0, 80) : "";
    next.agent = isObject(raw.agent) ? { name } : null;
  }
  return next;
}

/** The resume state of one widget key, in localStorage (or memory where storage is blocked). */
export class SessionStore {
  constructor(widgetKey, storage = undefined) {
    this.name = `supportbot.widget.v1.${widgetKey}`;
    // undefined: the page's localStorage, looked up (and probed) only when first written.
    this.given = storage;
    this.memory = null;
    this.written = false; // an entry exists: an earlier visit, or this one, wrote it
  }

  get storage() {
    if (this.given === undefined) this.given = safeLocalStorage();
    return this.given;
  }

  load() {
    let data = this.memory;
    if (!data) {
      const storage = this.given === undefined ? readableLocalStorage() : this.given;
      try {
        data = storage ? JSON.parse(storage.getItem(this.name) || "null") : null;
      } catch {
        data = null;
      }
      this.written = data !== null;
    }
    if (!isObject(data)) data = {};
    const messages = Array.isArray(data.messages) ? data.messages.filter(isValidMessage) : [];
    const outbox = Array.isArray(data.outbox)
      ? data.outbox.filter((m) => isObject(m) && typeof m.client_id === "string" && typeof m.text === "string")
      : [];
    const floors = {};
    if (isObject(data.stream_floors)) {
      const now = Date.now();
      for (const [id, floor] of Object.entries(data.stream_floors)) {
        if (isObject(floor) && Number.isFinite(floor.seq) && now - floor.at < STREAM_FLOOR_TTL_MS) floors[id] = floor;
      }
    }
    return {
      visitor_token: typeof data.visitor_token === "string" ? data.visitor_token : null,
      conversation_id: data.conversation_id != null ? String(data.conversation_id) : null,
      // last_seq is only as good as the transcript kept with it: derive it from that.
      last_seq: lastSeqOf(messages),
      messages,
      outbox,
      stream_floors: floors,
      conversation: parseConversation(data.conversation),
      identity_sub: typeof data.identity_sub === "string" ? data.identity_sub : null,
      consented: data.consented === true,
    };
  }

  save(session) {
    const messages = session.messages.filter(isFinal).sort((a, b) => a.seq - b.seq).slice(-CACHED_MESSAGES);
    const data = {
      visitor_token: session.visitor_token,
      conversation_id: session.conversation_id,
      last_seq: lastSeqOf(messages),
      messages,
      outbox: session.outbox,
      stream_floors: session.stream_floors,
      conversation: session.conversation || null,
      identity_sub: session.identity_sub || null,
      consented: session.consented === true,
    };
    this.memory = data;
    // Before the visitor's first message (or consent) there is nothing worth keeping: no
    // storage is touched.
    if (!this.written && !messages.length && !session.outbox.length && !data.consented) return;
    if (!this.storage) return;
    try {
      this.storage.setItem(this.name, JSON.stringify(data));
      this.written = true;
    } catch {
      // Quota or blocked storage: keep the session in memory for this page.
    }
  }

  clear() {
    this.memory = null;
    if (!this.written) return;
    this.written = false;
    if (!this.storage) return;
    try {
      this.storage.removeItem(this.name);
    } catch {
      // ignore
    }
  }
}

/** The page's localStorage to read from, without writing anything (null where blocked). */
function readableLocalStorage() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null;
  }
}

function safeLocalStorage() {
  try {
    const storage = globalThis.localStorage;
    const probe = "supportbot.widget.probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return null;
  }
}

export function isValidMessage(m) {
  return (
    isObject(m) &&
    m.id != null &&
    Number.isFinite(m.seq) &&
    typeof m.role === "string" &&
    typeof (m.text ?? "") === "string"
  );
}

function lastSeqOf(messages) {
  let last = 0;
  for (const m of messages) if (isFinal(m) && m.seq > last) last = m.seq;
  return last;
}

/**
 * The connection. Callbacks in `on` (all optional):
 *   state(name, info)         "connecting" | "open" | "waiting" | "offline" | "refused"
 *                             (info.code: the close code that led to "waiting", when there was one)
 *   reset()                   the server started another conversation: drop what is shown
 *   conversation(state)       the conversation's status, language and agent changed
 *                             (parseConversation's shape), or null: the server does not say
 *   messages(list)            authoritative Message objects (welcome, ack, message frames)
 *   stream(id, update)        a reply being streamed: {text, phase: "waiting"|"streaming"|"gap"}
 *   sent(client_id)           a message frame went out on the socket
 *   error(frame)              an `error` frame (the connection stays usable)
 *   truncated(firstSeq)       the catch-up left out messages before `firstSeq` (`welcome.truncated`)
 *   welcome(frame)            the `welcome` frame, for the fields read elsewhere (`assistant`)
 *   consent(frame)            the server recorded the visitor's consent decision (`consent.recorded`)
 *   erased(frame)             the visitor's data was erased: storage cleared, starting afresh
 */
export class WidgetConnection {
  constructor({ url, widgetKey, locale, store, identity = null, on = {}, WebSocketImpl = globalThis.WebSocket, random = Math.random }) {
    this.url = url;
    this.widgetKey = widgetKey;
    this.locale = locale;
    this.store = store;
    this.identity = identity || null; // a verified-identity token from the page, sent in hello
    this.on = on;
    this.WebSocketImpl = WebSocketImpl;
    this.random = random;

    let saved = store.load();
    if (saved.identity_sub && saved.identity_sub !== identitySubject(this.identity)) {
      // The session of another verified person (or of one who signed out): never shown here.
      store.clear();
      saved = store.load();
    }
    this.session = saved;
    this.socket = null;
    this.welcomed = false;
    this.attempt = 0;
    this.timer = null;
    this.welcomeTimer = null;
    this.state = "idle";
    this.streams = new Map(); // message_id -> {next: index expected or null, text, gap}
    this.known = new Map(saved.messages.map((m) => [String(m.id), m]));
    this.onOnline = () => {
      if (this.state === "waiting" || this.state === "offline") this.connect();
    };
  }

  /** Messages restored from the last visit, to render before the socket is up. */
  cachedMessages() {
    return [...this.known.values()];
  }

  pendingOutbox() {
    return [...this.session.outbox];
  }

  get hadSession() {
    return Boolean(this.session.visitor_token);
  }

  /** The conversation's state as last described by the server (null: it never said). */
  get conversation() {
    return this.session.conversation || null;
  }

  /** Ask for a person from the team (`handoff.request`). False when the socket is not ready. */
  requestHandoff() {
    if (!this.isReady()) return false;
    return this.sendFrame(this.socket, { type: "handoff.request" });
  }

  /** Send the visitor's consent decision ("accept" | "decline" | "withdraw") on `version`. */
  sendConsent(decision, version) {
    if (!this.isReady()) return false;
    return this.sendFrame(this.socket, { type: "consent", decision, version });
  }

  start() {
    globalThis.addEventListener?.("online", this.onOnline);
    this.connect();
  }

  stop() {
    globalThis.removeEventListener?.("online", this.onOnline);
    clearTimeout(this.timer);
    clearTimeout(this.welcomeTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000);
    this.setState("idle");
  }

  /** Forget the stored visitor and conversation and connect as a new visitor. */
  startOver() {
    this.stop();
    this.store.clear();
    this.session = {
      visitor_token: null,
      conversation_id: null,
      last_seq: 0,
      messages: [],
      outbox: [],
      stream_floors: {},
      conversation: null,
      identity_sub: null,
      consented: false,
    };
    this.known.clear();
    this.streams.clear();
    this.attempt = 0;
    this.on.reset?.();
    this.on.conversation?.(null);
    this.start();
  }

  /**
   * The page signed the visitor in or out, or renewed their token: reconnect with it. Another
   * person (or none) than the stored session's starts over, so nobody sees another's transcript.
   */
  setIdentity(token) {
    const next = typeof token === "string" && token ? token : null;
    if (next === this.identity) return;
    this.identity = next;
    const stored = this.session.identity_sub;
    if (stored && stored !== identitySubject(next)) {
      this.startOver();
      return;
    }
    this.attempt = 0;
    if (this.state === "refused") this.setState("idle");
    this.connect();
  }

  /** Whether the outbox is full: `send` refuses new messages until some are acknowledged. */
  get outboxFull() {
    return this.session.outbox.length >= MAX_OUTBOX;
  }

  /**
   * Queue `text` and send it when the socket is ready. Returns its client_id, or null when the
   * outbox already holds MAX_OUTBOX messages waiting for the server (nothing is queued).
   * `fields` go with it, resends included: `route` ("assistant" | "person", the visitor's
   * choice of who answers).
   */
  send(text, clientId = newClientId(), fields = {}) {
    let item = this.session.outbox.find((m) => m.client_id === clientId);
    if (!item) {
      if (this.outboxFull) return null;
      item = { client_id: clientId, text, ...fields };
      this.session.outbox.push(item);
      this.persist();
    }
    if (this.isReady()) this.transmit(item);
    return clientId;
  }

  /** Whether a message of this text fits in one frame. */
  static fits(text, clientId = "00000000-0000-4000-8000-000000000000") {
    const frame = JSON.stringify({ type: "message", client_id: clientId, text });
    return new TextEncoder().encode(frame).length <= MAX_FRAME_BYTES;
  }

  isReady() {
    return Boolean(this.socket && this.welcomed && this.socket.readyState === 1);
  }

  // ---- socket lifecycle -------------------------------------------------------------------

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.state === "refused") return;
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      try {
        old.close(1000);
      } catch {
        // ignore
      }
    }
    this.setState("connecting", { attempt: this.attempt });
    let socket;
    try {
      socket = new this.WebSocketImpl(this.url);
    } catch {
      this.scheduleReconnect(BACKOFF);
      return;
    }
    this.socket = socket;
    this.welcomed = false;
    socket.onopen = () => {
      if (socket !== this.socket) return;
      this.sendFrame(socket, {
        type: "hello",
        key: this.widgetKey,
        visitor_token: this.session.visitor_token,
        conversation_id: this.session.conversation_id,
        last_seq: this.lastSeq(),
        locale: this.locale,
        ...(this.identity ? { identity: this.identity } : {}),
      });
      clearTimeout(this.welcomeTimer);
      this.welcomeTimer = setTimeout(() => {
        if (socket === this.socket && !this.welcomed) socket.close(4000, "no welcome");
      }, WELCOME_TIMEOUT_MS);
    };
    socket.onmessage = (event) => {
      if (socket === this.socket) this.handleFrame(event.data);
    };
    socket.onclose = (event) => {
      if (socket === this.socket) this.handleClose(event);
    };
    socket.onerror = () => {
      // A close event always follows.
    };
  }

  handleClose(event) {
    this.socket = null;
    this.welcomed = false;
    clearTimeout(this.welcomeTimer);
    if (event.code === CLOSE_ERASED) {
      this.onErased({ conversation_id: this.session.conversation_id });
      return;
    }
    if (event.code === CLOSE_REFUSED) {
      this.setState("refused", { hadSession: this.hadSession });
      return;
    }
    if (event.code === CLOSE_RESUME) this.attempt = 0; // not a failure: the first, shortest delay
    this.scheduleReconnect(event.code === CLOSE_TOO_MANY ? BUSY_BACKOFF : BACKOFF, event.code === CLOSE_TOO_MANY, event.code);
  }

  scheduleReconnect(policy, busy = false, code = null) {
    this.attempt += 1;
    const delay = backoffDelay(policy, this.attempt, this.random);
    const offline = globalThis.navigator && navigator.onLine === false;
    this.setState(offline ? "offline" : "waiting", { delayMs: delay, retryAt: Date.now() + delay, busy, code });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  setState(name, info = {}) {
    this.state = name;
    this.on.state?.(name, info);
  }

  sendFrame(socket, frame) {
    try {
      socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  transmit(item) {
    const frame = { type: "message", client_id: item.client_id, text: item.text };
    if (item.route === "assistant" || item.route === "person") frame.route = item.route;
    if (this.sendFrame(this.socket, frame)) {
      this.on.sent?.(item.client_id);
    }
  }

  persist() {
    this.session.messages = [...this.known.values()];
    this.store.save(this.session);
  }

  /**
   * The `last_seq` to resume from: the highest seq shown, except that a reply still streaming
   * (its seq is not known yet, and may be lower than a message sent after it started) must be
   * sent again, so resume from below it.
   */
  lastSeq() {
    let last = 0;
    for (const m of this.known.values()) if (isFinal(m) && m.seq > last) last = m.seq;
    for (const floor of Object.values(this.session.stream_floors)) last = Math.min(last, floor.seq);
    return last;
  }

  openFloor(id) {
    if (this.session.stream_floors[id]) return;
    let last = 0;
    for (const m of this.known.values()) if (isFinal(m) && m.seq > last) last = m.seq;
    this.session.stream_floors[id] = { seq: last, at: Date.now() };
    this.persist();
  }

  // ---- frames ------------------------------------------------------------------------------

  handleFrame(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!isObject(frame)) return;
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(frame);
      case "ack":
        if (isValidMessage(frame.message)) this.accept([frame.message]);
        return this.settle(frame.client_id);
      case "reply.start":
        return this.onReplyStart(frame);
      case "reply.delta":
        return this.onReplyDelta(frame);
      case "message":
        if (isValidMessage(frame.message)) this.accept([frame.message]);
        return undefined;
      case "error":
        return this.onErrorFrame(frame);
      case "conversation.updated":
        return this.setConversation(parseConversation(frame.conversation, this.session.conversation));
      case "consent.recorded":
        return this.onConsentRecorded(frame);
      case "erased":
        return this.onErased(frame);
      default:
        return undefined; // a newer server's frame: ignore
    }
  }

  onWelcome(frame) {
    const conversation = frame.conversation_id != null ? String(frame.conversation_id) : null;
    if (this.session.conversation_id && conversation && conversation !== this.session.conversation_id) {
      // Another conversation than the one shown: start the view from scratch.
      this.known.clear();
      this.streams.clear();
      this.session.stream_floors = {};
      this.session.conversation = null;
      this.on.reset?.();
    }
    this.session.visitor_token = typeof frame.visitor_token === "string" ? frame.visitor_token : this.session.visitor_token;
    this.session.conversation_id = conversation;
    this.session.identity_sub = identitySubject(this.identity);
    this.welcomed = true;
    this.attempt = 0;
    clearTimeout(this.welcomeTimer);
    // A server that does not describe the conversation (protocol v1 before the extension) leaves
    // it null: no handoff button, no banners.
    this.setConversation(isObject(frame.conversation) ? parseConversation(frame.conversation) : null, false);
    this.on.welcome?.(frame); // fields for other parts of the widget (`assistant`)
    const messages = Array.isArray(frame.messages) ? frame.messages.filter(isValidMessage) : [];
    this.accept(messages);
    if (frame.truncated === true && Number.isInteger(frame.first_seq) && frame.first_seq > 0) {
      this.on.truncated?.(frame.first_seq);
    }
    this.persist();
    this.setState("open");
    // Anything not acknowledged goes again, same client_id, in order.
    for (const item of this.session.outbox) this.transmit(item);
  }

  onConsentRecorded(frame) {
    if (frame.decision === "accept") {
      // From now on the session may be kept: the token names the visitor stored with it.
      if (typeof frame.visitor_token === "string") this.session.visitor_token = frame.visitor_token;
      if (typeof frame.conversation_id === "string") this.session.conversation_id = frame.conversation_id;
      this.session.consented = true;
      this.persist();
    }
    this.on.consent?.(frame);
  }

  /** The visitor's data is gone from the server: forget it here too and start afresh. */
  /** The visitor's data was erased (now, or before this hello): forget everything stored. An
   * `erased` naming another conversation than this one is not about this visitor. */
  onErased(frame) {
    const erased = frame.conversation_id != null ? String(frame.conversation_id) : null;
    if (erased && this.session.conversation_id && erased !== this.session.conversation_id) return;
    this.startOver();
    this.on.erased?.(frame);
  }

  setConversation(conversation, save = true) {
    this.session.conversation = conversation;
    if (save) this.persist();
    this.on.conversation?.(conversation);
  }

  accept(messages) {
    if (!messages.length) return;
    for (const m of messages) {
      const id = String(m.id);
      this.known.set(id, m);
      if (isFinal(m)) {
        this.streams.delete(id);
        delete this.session.stream_floors[id];
      }
      if (m.client_id) this.settle(m.client_id, false);
    }
    this.persist();
    this.on.messages?.(messages);
  }

  settle(clientId, save = true) {
    if (!clientId) return;
    const before = this.session.outbox.length;
    this.session.outbox = this.session.outbox.filter((m) => m.client_id !== clientId);
    if (save && this.session.outbox.length !== before) this.persist();
  }

  onReplyStart(frame) {
    if (frame.message_id == null) return;
    const id = String(frame.message_id);
    const known = this.known.get(id);
    if (known && isFinal(known)) return; // already have the final text
    // The first delta after reply.start holds the text so far (all of it after a reconnect).
    this.streams.set(id, { next: null, text: "", gap: false });
    this.openFloor(id);
    this.on.stream?.(id, { text: "", phase: "waiting" });
  }

  onReplyDelta(frame) {
    if (frame.message_id == null || typeof frame.text !== "string") return;
    const id = String(frame.message_id);
    const known = this.known.get(id);
    if (known && isFinal(known)) return;
    const index = Number(frame.index);
    let stream = this.streams.get(id);
    if (!stream) {
      // No reply.start seen: only a stream starting at 0 can be trusted.
      stream = { next: 0, text: "", gap: false };
      this.streams.set(id, stream);
      this.openFloor(id);
    }
    if (stream.gap) return; // wait for the final message
    if (!Number.isInteger(index)) return;
    if (stream.next === null) {
      stream.text = frame.text;
      stream.next = index + 1;
    } else if (index === stream.next) {
      stream.text += frame.text;
      stream.next += 1;
    } else if (index < stream.next) {
      return; // a repeat
    } else {
      // A delta went missing. The server resyncs with `reply.start` and the text so far (which
      // clears this); failing that, the final `message` carries the full text.
      stream.gap = true;
    }
    this.on.stream?.(id, { text: stream.text, phase: stream.gap ? "gap" : "streaming" });
  }

  onErrorFrame(frame) {
    const clientId = typeof frame.client_id === "string" ? frame.client_id : null;
    // These codes mean the message was not stored: the visitor decides whether to send again.
    if (clientId && ["bad_request", "too_long", "rate_limited", "consent_required"].includes(frame.code)) {
      this.settle(clientId);
    }
    this.on.error?.({
      code: String(frame.code || "error"),
      detail: typeof frame.detail === "string" ? frame.detail : "",
      client_id: clientId,
      retry_after: Number.isFinite(frame.retry_after) ? frame.retry_after : null,
    });
  }
}
