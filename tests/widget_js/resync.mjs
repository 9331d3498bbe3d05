// The widget's protocol module under Node: a reply whose deltas were lost on the way. The
// server resyncs (`reply.start` and the text so far); the widget shows the whole text again
// and goes on streaming. Prints a JSON report.
import { SessionStore, WidgetConnection } from "../../static/widget/protocol.js";

const KEY = "pk_test";

class FakeStorage {
  constructor() { this.items = new Map(); }
  getItem(name) { return this.items.has(name) ? this.items.get(name) : null; }
  setItem(name, value) { this.items.set(name, String(value)); }
  removeItem(name) { this.items.delete(name); }
}

const sockets = [];
class FakeSocket {
  constructor(url) {
    this.url = url;
    this.sent = [];
    sockets.push(this);
    queueMicrotask(() => this.onopen?.());
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close() {}
  receive(frame) { this.onmessage?.({ data: JSON.stringify(frame) }); }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
const updates = [];
const connection = new WidgetConnection({
  url: "ws://test/ws/widget/",
  widgetKey: KEY,
  locale: "en",
  store: new SessionStore(KEY, new FakeStorage()),
  WebSocketImpl: FakeSocket,
  on: { stream: (id, update) => updates.push({ id, ...update }) },
});
connection.start();
await tick();
const socket = sockets[0];
socket.receive({ type: "welcome", visitor_token: "t", conversation_id: "c-1", seq: 1, messages: [] });
const delta = (index, text) => ({ type: "reply.delta", message_id: "r1", index, text });
socket.receive({ type: "reply.start", message_id: "r1" });
socket.receive(delta(0, "Your "));
socket.receive(delta(1, "parcel "));
socket.receive(delta(4, "tomorrow ")); // 2 and 3 were lost
const atGap = updates[updates.length - 1];
socket.receive({ type: "reply.start", message_id: "r1" }); // the server's resync
socket.receive(delta(4, "Your parcel arrives today, "));
socket.receive(delta(5, "not tomorrow."));
const after = updates[updates.length - 1];
console.log(JSON.stringify({ atGap, after }));
