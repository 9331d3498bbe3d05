// Exposes the widget's Markdown renderer to the browser test.
import { renderMarkdown, safeUrl } from "/static/widget/markdown.js";

window.xssFired = [];
window.renderInto = (text) => {
  const out = document.getElementById("out");
  out.replaceChildren(renderMarkdown(text));
  return out.innerHTML;
};
window.safeUrl = safeUrl;
window.harnessReady = true;
