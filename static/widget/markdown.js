// A small, safe Markdown renderer for chat messages.
//
// It builds DOM nodes and never parses markup: text always lands in text nodes, so raw HTML in a
// message is shown as text. Supported: paragraphs and line breaks, **bold**, *italic*, ~~strike~~,
// `code`, fenced code blocks, headings (as bold lines), block quotes, bulleted and numbered lists
// (nested by indentation), horizontal rules, [links](url) and bare http(s) URLs. Links are kept
// only for http:, https: and mailto: and open in a new tab with rel="noopener noreferrer". Images
// are never loaded: ![alt](src) becomes a link labelled with its alt text. A labelled web link
// whose label does not name the host it goes to is followed by that host in brackets
// ("[bank.com](https://evil.example)" shows "bank.com (evil.example)"), so a visitor sees where
// it really leads.

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const MAX_BLOCK_DEPTH = 8;
const MAX_INLINE_DEPTH = 12;
const MAX_LABEL = 1000;
const MAX_URL = 2048;

/** The normalised URL if it is absolute and http(s)/mailto, otherwise null. */
export function safeUrl(raw) {
  if (typeof raw !== "string") return null;
  const trimmed = raw.trim();
  if (!trimmed || trimmed.length > MAX_URL) return null;
  let url;
  try {
    url = new URL(trimmed); // relative URLs throw: they would point at the widget's own host
  } catch {
    return null;
  }
  return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
}

/** A link element that opens `href` (already checked by safeUrl) in a new tab. */
export function makeLink(doc, href) {
  const a = doc.createElement("a");
  a.setAttribute("href", href);
  a.setAttribute("target", "_blank");
  a.setAttribute("rel", "noopener noreferrer");
  return a;
}

/** The host a link's label names, when it reads as a URL or a domain; otherwise null. */
function labelHost(label) {
  const text = label.trim().toLowerCase();
  if (!text || /\s/.test(text)) return null;
  try {
    return new URL(/^[a-z][a-z0-9+.-]*:\/\//.test(text) ? text : `https://${text}`).hostname;
  } catch {
    return null;
  }
}

/**
 * After a web link whose label does not name its real host: the host, in brackets (the URL
 * parser's form: an internationalised name shows as punycode, so a look-alike stands out).
 */
export function appendLinkHost(parent, link, doc) {
  let url;
  try {
    url = new URL(link.getAttribute("href"));
  } catch {
    return;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return;
  const label = (link.textContent || "").trim().toLowerCase();
  // Named as it really is (an internationalised label reads differently from its punycode).
  if (labelHost(label) === url.hostname && label.includes(url.hostname)) return;
  const host = doc.createElement("span");
  host.className = "md-link-host";
  host.appendChild(doc.createTextNode(` (${url.host})`));
  parent.appendChild(host);
}

/** Render `text` as a DocumentFragment. */
export function renderMarkdown(text, doc = document) {
  const frag = doc.createDocumentFragment();
  const lines = String(text ?? "")
    .replace(/\r\n?/g, "\n")
    .split("\n");
  renderBlocks(lines, frag, doc, 0);
  return frag;
}

// ---- blocks -------------------------------------------------------------------------------

const FENCE_RE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const HEADING_RE = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const HR_RE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE_RE = /^ {0,3}> ?(.*)$/;
const LIST_RE = /^([ \t]*)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;

const isBlank = (line) => /^\s*$/.test(line);
const indentOf = (line) => line.replace(/\t/g, "    ").match(/^ */)[0].length;

function startsBlock(line) {
  return FENCE_RE.test(line) || HEADING_RE.test(line) || HR_RE.test(line) || QUOTE_RE.test(line);
}

function listItem(line) {
  const m = LIST_RE.exec(line);
  if (!m) return null;
  const marker = m[2];
  const ordered = /\d/.test(marker);
  return {
    indent: indentOf(m[1]),
    ordered,
    start: ordered ? parseInt(marker, 10) : 1,
    contentIndent: indentOf(m[1]) + marker.length + 1,
    text: m[3] ?? "",
  };
}

function renderBlocks(lines, parent, doc, depth) {
  if (depth > MAX_BLOCK_DEPTH) {
    appendParagraph(lines.filter((l) => !isBlank(l)).join("\n"), parent, doc);
    return;
  }
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }

    const fence = FENCE_RE.exec(line);
    if (fence && !(fence[1][0] === "`" && fence[2].includes("`"))) {
      const opener = fence[1];
      const body = [];
      i += 1;
      while (i < lines.length) {
        const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(lines[i]);
        if (close && close[1][0] === opener[0] && close[1].length >= opener.length) {
          i += 1;
          break;
        }
        body.push(lines[i]);
        i += 1;
      }
      const pre = doc.createElement("pre");
      const code = doc.createElement("code");
      const language = fence[2].trim().split(/\s+/)[0];
      if (language && /^[\w+#.-]{1,32}$/.test(language)) code.dataset.language = language;
      code.textContent = body.join("\n");
      pre.appendChild(code);
      parent.appendChild(pre);
      continue;
    }

    if (HR_RE.test(line)) {
      parent.appendChild(doc.createElement("hr"));
      i += 1;
      continue;
    }

    const heading = HEADING_RE.exec(line);
    if (heading) {
      const p = doc.createElement("p");
      p.className = "md-heading";
      const strong = doc.createElement("strong");
      appendInline(strong, heading[2] ?? "", doc, 0, false);
      p.appendChild(strong);
      parent.appendChild(p);
      i += 1;
      continue;
    }

    if (QUOTE_RE.test(line)) {
      const inner = [];
      while (i < lines.length && !isBlank(lines[i])) {
        const q = QUOTE_RE.exec(lines[i]);
        inner.push(q ? q[1] : lines[i]);
        i += 1;
      }
      const quote = doc.createElement("blockquote");
      renderBlocks(inner, quote, doc, depth + 1);
      parent.appendChild(quote);
      continue;
    }

    if (listItem(line)) {
      i = renderList(lines, i, parent, doc, depth);
      continue;
    }

    // A paragraph: up to a blank line or the start of another block (lists may interrupt it,
    // as models often write "Steps:\n1. ..." without a blank line).
    const para = [line.trim()];
    i += 1;
    while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines[i]) && !listItem(lines[i])) {
      para.push(lines[i].trim());
      i += 1;
    }
    appendParagraph(para.join("\n"), parent, doc);
  }
}

function appendParagraph(text, parent, doc) {
  const p = doc.createElement("p");
  appendInline(p, text, doc, 0, false);
  parent.appendChild(p);
}

function renderList(lines, i, parent, doc, depth) {
  const first = listItem(lines[i]);
  const list = doc.createElement(first.ordered ? "ol" : "ul");
  if (first.ordered && first.start !== 1) list.setAttribute("start", String(first.start));
  parent.appendChild(list);

  while (i < lines.length) {
    const item = listItem(lines[i]);
    if (!item || item.indent !== first.indent || item.ordered !== first.ordered) break;
    const content = [item.text];
    i += 1;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        // A blank line continues the item only if more indented content follows.
        let j = i + 1;
        while (j < lines.length && isBlank(lines[j])) j += 1;
        if (j < lines.length && indentOf(lines[j]) > first.indent && !isBlank(lines[j])) {
          for (; i < j; i += 1) content.push("");
          continue;
        }
        break;
      }
      const nested = listItem(line);
      if (nested && nested.indent <= first.indent) break;
      const indent = indentOf(line);
      if (indent > first.indent) {
        content.push(line.replace(/\t/g, "    ").slice(Math.min(indent, item.contentIndent)));
      } else if (startsBlock(line)) {
        break;
      } else {
        content.push(line.trim()); // lazy continuation of the item's text
      }
      i += 1;
    }
    const li = doc.createElement("li");
    renderBlocks(content, li, doc, depth + 1);
    // The item's first paragraph is unwrapped, so tight lists stay compact.
    if (li.firstChild && li.firstChild.nodeName === "P") {
      const p = li.firstChild;
      while (p.firstChild) li.insertBefore(p.firstChild, p);
      li.removeChild(p);
    }
    list.appendChild(li);
  }
  return i;
}

// ---- inline -------------------------------------------------------------------------------

const PUNCTUATION = /[!-/:-@[-`{-~]/;
const isSpace = (ch) => ch === undefined || /\s/.test(ch);
const isWordChar = (ch) => ch !== undefined && /[\p{L}\p{N}]/u.test(ch);

function appendInline(parent, text, doc, depth, inLink) {
  if (depth > MAX_INLINE_DEPTH) {
    appendText(parent, text, doc);
    return;
  }
  // Searching for a closing delimiter that is not there fails the same way from any later
  // position, so remember the failures: this keeps pathological input linear.
  const noCloserFrom = new Map();
  const searchCloser = (kind, from, finder) => {
    if (noCloserFrom.has(kind) && from >= noCloserFrom.get(kind)) return -1;
    const j = finder(from);
    if (j < 0) noCloserFrom.set(kind, from);
    return j;
  };

  let buffer = "";
  const flush = () => {
    if (buffer) appendText(parent, buffer, doc);
    buffer = "";
  };

  let i = 0;
  while (i < text.length) {
    const ch = text[i];

    if (ch === "\\" && i + 1 < text.length && PUNCTUATION.test(text[i + 1])) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }

    if (ch === "\n") {
      flush();
      parent.appendChild(doc.createElement("br"));
      i += 1;
      continue;
    }

    if (ch === "`") {
      let n = 1;
      while (text[i + n] === "`") n += 1;
      const fence = "`".repeat(n);
      const j = searchCloser(`code${n}`, i + n, (from) => {
        let k = text.indexOf(fence, from);
        while (k >= 0 && (text[k + n] === "`" || text[k - 1] === "`")) {
          let end = k;
          while (text[end] === "`") end += 1;
          k = text.indexOf(fence, end);
        }
        return k;
      });
      if (j >= 0) {
        flush();
        let body = text.slice(i + n, j).replace(/\n/g, " ");
        if (body.length > 2 && body.startsWith(" ") && body.endsWith(" ")) body = body.slice(1, -1);
        const code = doc.createElement("code");
        code.textContent = body;
        parent.appendChild(code);
        i = j + n;
      } else {
        buffer += fence;
        i += n;
      }
      continue;
    }

    if (ch === "!" && text[i + 1] === "[") {
      const link = parseLinkLike(text, i + 1);
      if (link) {
        flush();
        const href = safeUrl(link.url);
        const label = link.label.trim() || link.url;
        if (href && !inLink && /^https?:/.test(href)) {
          const a = makeLink(doc, href);
          a.className = "md-image-link";
          appendText(a, label, doc);
          parent.appendChild(a);
          appendLinkHost(parent, a, doc);
        } else {
          appendText(parent, label, doc);
        }
        i = link.end;
        continue;
      }
    }

    if (ch === "[" && !inLink) {
      const link = parseLinkLike(text, i);
      if (link) {
        flush();
        const href = safeUrl(link.url);
        if (href) {
          const a = makeLink(doc, href);
          if (link.label.trim()) appendInline(a, link.label, doc, depth + 1, true);
          else appendText(a, link.url, doc);
          parent.appendChild(a);
          appendLinkHost(parent, a, doc);
        } else {
          appendInline(parent, link.label, doc, depth + 1, inLink);
        }
        i = link.end;
        continue;
      }
    }

    if (ch === "<") {
      const m = /^<([a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*)>/.exec(text.slice(i, i + MAX_URL + 2));
      const href = m && !inLink ? safeUrl(m[1]) : null;
      if (href) {
        flush();
        const a = makeLink(doc, href);
        appendText(a, m[1], doc);
        parent.appendChild(a);
        appendLinkHost(parent, a, doc);
        i += m[0].length;
        continue;
      }
    }

    // Bare URLs, unless they sit in what looks like an HTML attribute (shown as text).
    if ((ch === "h" || ch === "H") && !inLink && !isWordChar(text[i - 1]) && !"\"'=/".includes(text[i - 1] ?? " ")) {
      const m = /^https?:\/\/[^\s<>"'`]+/i.exec(text.slice(i, i + MAX_URL));
      if (m) {
        const url = trimUrlEnd(m[0]);
        const href = safeUrl(url);
        if (href) {
          flush();
          const a = makeLink(doc, href);
          appendText(a, url, doc);
          parent.appendChild(a);
          appendLinkHost(parent, a, doc);
          i += url.length;
          continue;
        }
      }
    }

    if (ch === "*" || ch === "_" || (ch === "~" && text[i + 1] === "~")) {
      const consumed = tryEmphasis(text, i, parent, doc, depth, inLink, flush, searchCloser);
      if (consumed > 0) {
        i = consumed;
        continue;
      }
      let run = 1;
      while (text[i + run] === ch) run += 1;
      buffer += ch.repeat(run);
      i += run;
      continue;
    }

    buffer += ch;
    i += 1;
  }
  flush();
}

// Emphasis starting at i; returns the index after it, or 0 if it is not emphasis.
function tryEmphasis(text, i, parent, doc, depth, inLink, flush, searchCloser) {
  const ch = text[i];
  let run = 1;
  while (text[i + run] === ch) run += 1;
  // Opening: followed by a non-space; "_" must not sit inside a word (snake_case stays as is).
  if (ch === "_" && isWordChar(text[i - 1])) return 0;

  const tryWidth = (width, tag) => {
    if (run < width || isSpace(text[i + width])) return 0;
    const delim = ch.repeat(width);
    const j = searchCloser(`${ch}${width}`, i + width, (from) => {
      let k = text.indexOf(delim, from);
      while (k >= 0) {
        const before = text[k - 1];
        const after = text[k + width];
        // A closer follows a non-space, ends its run of delimiters, and is not empty.
        let ok = k > from && !isSpace(before) && after !== ch;
        if (width === 1) ok = ok && before !== ch;
        if (ch === "_") ok = ok && !isWordChar(after);
        if (ok) return k;
        k = text.indexOf(delim, k + 1);
      }
      return -1;
    });
    if (j < 0) return 0;
    flush();
    const el = doc.createElement(tag);
    appendInline(el, text.slice(i + width, j), doc, depth + 1, inLink);
    parent.appendChild(el);
    return j + width;
  };

  if (ch === "~") return tryWidth(2, "del");
  if (run >= 2) {
    const strong = tryWidth(2, "strong");
    if (strong) return strong;
  }
  return run === 1 || run >= 3 ? tryWidth(1, "em") : 0;
}

// "[label](url "title")" starting at i (text[i] === "["); null if it is not one.
function parseLinkLike(text, i) {
  let depth = 0;
  let k = i;
  const limit = Math.min(text.length, i + MAX_LABEL);
  for (; k < limit; k += 1) {
    const c = text[k];
    if (c === "\\") {
      k += 1;
    } else if (c === "[") {
      depth += 1;
    } else if (c === "]") {
      depth -= 1;
      if (depth === 0) break;
    } else if (c === "\n" && text[k + 1] === "\n") {
      return null;
    }
  }
  if (depth !== 0 || text[k] !== "]" || text[k + 1] !== "(") return null;
  const label = text.slice(i + 1, k);
  let p = k + 2;
  while (text[p] === " ") p += 1;
  let url = "";
  if (text[p] === "<") {
    const close = text.indexOf(">", p);
    if (close < 0 || close - p > MAX_URL) return null;
    url = text.slice(p + 1, close);
    p = close + 1;
  } else {
    let parens = 0;
    const start = p;
    for (; p < text.length && p - start < MAX_URL; p += 1) {
      const c = text[p];
      if (/\s/.test(c)) break;
      if (c === "(") parens += 1;
      if (c === ")") {
        if (parens === 0) break;
        parens -= 1;
      }
    }
    url = text.slice(start, p);
  }
  while (text[p] === " ") p += 1;
  if (text[p] === '"' || text[p] === "'") {
    const close = text.indexOf(text[p], p + 1);
    if (close < 0) return null;
    p = close + 1;
    while (text[p] === " ") p += 1;
  }
  if (text[p] !== ")") return null;
  return { label, url, end: p + 1 };
}

function trimUrlEnd(url) {
  let end = url.length;
  while (end > 0) {
    const c = url[end - 1];
    if (".,;:!?*_~".includes(c)) {
      end -= 1;
    } else if (c === ")") {
      const open = (url.slice(0, end).match(/\(/g) || []).length;
      const close = (url.slice(0, end).match(/\)/g) || []).length;
      if (close > open) end -= 1;
      else break;
    } else {
      break;
    }
  }
  return url.slice(0, end);
}

function appendText(parent, text, doc) {
  if (!text) return;
  const last = parent.lastChild;
  if (last && last.nodeType === 3) last.appendData(text);
  else parent.appendChild(doc.createTextNode(text));
}
