// What the message list shows: server messages ordered by `seq` and deduplicated by `id`, replies
// still streaming, the visitor's own messages not acknowledged yet, and local notices.
//
// Every entry has a stable `key` and a `rev` bumped on each change, so the view redraws only
// what changed.
//
// A local notice's text is either a string or {key, values}: a key of the string table, so the
// view can say it again in another language when the conversation's language changes.

const optionalString = (value, max) => (typeof value === "string" && value.trim() ? value.trim().slice(0, max) : null);

export class Transcript {
  constructor(onChange = () => {}) {
    this.entries = new Map(); // key -> entry
    this.arrival = 0;
    this.onChange = onChange;
  }

  clear() {
    this.entries.clear();
    this.onChange();
  }

  /** Authoritative messages from the server (welcome, ack, message). */
  upsertMessages(messages) {
    for (const m of messages) {
      const key = `m:${m.id}`;
      const old = this.entries.get(key);
      // The visitor's local copy is replaced by the stored one.
      if (m.client_id) {
        const local = this.entries.get(`c:${m.client_id}`);
        if (local) this.entries.delete(local.key);
      }
      const next = {
        key,
        id: String(m.id),
        seq: m.seq,
        role: m.role,
        text: typeof m.text === "string" ? m.text : "",
        status: m.status || "complete",
        sources: Array.isArray(m.sources) ? m.sources : [],
        client_id: m.client_id || null,
        created_at: m.created_at || null,
        language: optionalString(m.language, 35) ?? old?.language ?? null,
        author_name: optionalString(m.author_name, 80),
        phase: m.status === "streaming" ? "streaming" : null,
        notice: old?.notice ?? null,
        arrival: old?.arrival ?? this.arrival++,
        rev: (old?.rev ?? 0) + 1,
      };
      // A streaming copy keeps the longer text we built from deltas until the final arrives.
      if (next.status === "streaming" && old && old.text.length > next.text.length) next.text = old.text;
      this.entries.set(key, next);
    }
    this.onChange();
  }

  /** A reply being streamed: text built from deltas so far. */
  stream(id, { text, phase }) {
    const key = `m:${id}`;
    const old = this.entries.get(key);
    if (old && old.status !== "streaming" && old.phase === null) return; // final already shown
    this.entries.set(key, {
      key,
      id: String(id),
      seq: old?.seq ?? null,
      role: old?.role ?? "assistant",
      text: phase === "gap" ? old?.text ?? text : text,
      status: "streaming",
      sources: old?.sources ?? [],
      client_id: null,
      created_at: old?.created_at ?? null,
      language: old?.language ?? null,
      author_name: old?.author_name ?? null,
      phase,
      notice: null,
      after: old?.after ?? this.anchor(),
      arrival: old?.arrival ?? this.arrival++,
      rev: (old?.rev ?? 0) + 1,
    });
    this.onChange();
  }

  /** The visitor's message, shown at once and replaced by the stored one on `ack`. */
  addLocal(clientId, text, state = "sending") {
    const key = `c:${clientId}`;
    const old = this.entries.get(key);
    this.entries.set(key, {
      key,
      id: null,
      seq: null,
      role: "user",
      text,
      status: "local",
      sources: [],
      client_id: clientId,
      created_at: null,
      phase: null,
      localState: state,
      notice: null,
      after: old?.after ?? this.anchor(),
      arrival: old?.arrival ?? this.arrival++,
      rev: (old?.rev ?? 0) + 1,
    });
    this.onChange();
  }

  /** Attach a plain-words notice to the message sent with `clientId`. Returns false if none. */
  noticeFor(clientId, notice) {
    for (const entry of this.entries.values()) {
      if (entry.client_id === clientId) {
        entry.notice = notice;
        if (entry.status === "local") entry.localState = notice.failed ? "failed" : entry.localState;
        entry.rev += 1;
        this.onChange();
        return true;
      }
    }
    return false;
  }

  /** A notice that belongs to no message (shown at the end of the list). */
  addNotice(text) {
    const key = `n:${this.arrival}`;
    this.entries.set(key, {
      key,
      id: null,
      seq: null,
      role: "notice",
      text,
      status: "local",
      sources: [],
      client_id: null,
      created_at: null,
      phase: null,
      notice: null,
      after: this.anchor(),
      arrival: this.arrival++,
      rev: 1,
    });
    this.onChange();
  }

  /**
   * Where a catch-up left older messages out (`welcome.truncated`): a notice placed just before
   * the message `firstSeq`, so what is shown from before it does not read as continuous.
   */
  markGap(firstSeq) {
    const key = `g:${firstSeq}`;
    if (this.entries.has(key)) return;
    this.entries.set(key, {
      key,
      id: null,
      seq: null,
      role: "notice",
      text: { key: "earlierNotShown" },
      status: "local",
      sources: [],
      client_id: null,
      created_at: null,
      phase: null,
      notice: null,
      after: firstSeq - 1,
      arrival: -1, // before anything else placed after the same message
      rev: 1,
    });
    this.onChange();
  }

  removeLocal(clientId) {
    this.entries.delete(`c:${clientId}`);
    this.onChange();
  }

  /** The highest seq shown: where an entry without a seq of its own is placed. */
  anchor() {
    let max = 0;
    for (const e of this.entries.values()) if (Number.isFinite(e.seq) && e.seq > max) max = e.seq;
    return max;
  }

  /**
   * Display order: stored messages by seq. An entry without a seq (a reply streaming, the
   * visitor's unacknowledged or refused message, a local notice) stays right after the stored
   * message that was last when it appeared, in arrival order.
   */
  ordered() {
    const position = (e) => (Number.isFinite(e.seq) ? [e.seq, 0, e.arrival] : [e.after ?? 0, 1, e.arrival]);
    return [...this.entries.values()].sort((a, b) => {
      const pa = position(a);
      const pb = position(b);
      return pa[0] - pb[0] || pa[1] - pb[1] || pa[2] - pb[2];
    });
  }

  get size() {
    return this.entries.size;
  }
}
