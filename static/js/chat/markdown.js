// Markdown for model output: marked parses, highlight.js colours code, DOMPurify sanitises, and the result is
// morphed into the page so a streaming answer grows without flicker (unchanged blocks are left alone).
//
// Model output is untrusted. Raw HTML in it is shown as text, not interpreted. DOMPurify then removes anything
// active that could remain: scripts, event handlers, forms, styles, frames, and links that are not http(s) or
// mailto. Links open in a new tab with rel="noopener noreferrer". Images are shown as links (no remote loads).

import { Marked } from "marked";
import DOMPurify from "dompurify";
import hljs from "highlight.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const LANGUAGE_NAMES = {
  js: "javascript",
  ts: "typescript",
  py: "python",
  sh: "bash",
  shell: "bash",
  zsh: "bash",
  yml: "yaml",
  html: "xml",
  md: "markdown",
  "c++": "cpp",
  golang: "go",
  rs: "rust",
};

function languageOf(info) {
  const word = (info || "").trim().split(/\s+/)[0].toLowerCase();
  return LANGUAGE_NAMES[word] || word;
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    code({ text, lang }) {
      const language = languageOf(lang);
      const known = language && hljs.getLanguage(language);
      const body = known ? hljs.highlight(text, { language, ignoreIllegals: true }).value : escapeHtml(text);
      const label = (lang || "").trim().split(/\s+/)[0];
      const cls = label ? ` class="hljs language-${escapeHtml(label.replace(/[^\w+#-]/g, ""))}"` : ' class="hljs"';
      return `<pre><code${cls}>${body}</code></pre>\n`;
    },
    // Raw HTML from the model is displayed, never run or rendered.
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text)}</p>\n` : escapeHtml(text);
    },
    image({ href, text }) {
      const label = text ? `Image: ${text}` : "Image";
      return `<a href="${escapeHtml(href || "")}">${escapeHtml(label)}</a>`;
    },
  },
});

const SAFE_URL = /^(https?:|mailto:)/i;

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true }, // no SVG or MathML
  FORBID_TAGS: [
    "style", "script", "form", "input", "button", "textarea", "select", "option", "iframe", "frame",
    "frameset", "object", "embed", "link", "meta", "base", "img", "picture", "video", "audio", "source",
    "track", "dialog", "template", "noscript", "svg", "math",
  ],
  FORBID_ATTR: ["style", "srcset", "action", "formaction", "autofocus", "tabindex", "id", "name"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  const href = node.getAttribute("href");
  if (href === null || !SAFE_URL.test(href.trim())) {
    node.removeAttribute("href"); // javascript:, data:, relative links into this app...
    node.removeAttribute("target");
    return;
  }
  node.setAttribute("target", "_blank");
  node.setAttribute("rel", "noopener noreferrer");
});

/** Sanitise an HTML string into a fragment (exported for tests of the configuration in the browser). */
export function sanitize(html) {
  return DOMPurify.sanitize(html, PURIFY_CONFIG);
}

/** Add the chrome around blocks: a header with the language and a Copy button on code, a scroller on tables. */
function decorate(fragment) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const match = code && /language-([\w+#-]+)/.exec(code.className);
    const block = document.createElement("div");
    block.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const lang = document.createElement("span");
    lang.className = "code-lang";
    lang.textContent = match ? match[1] : "text";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-copy";
    copy.textContent = "Copy code";
    head.append(lang, copy);
    pre.tabIndex = 0; // long lines scroll sideways: keyboard users must be able to reach the scroller
    pre.replaceWith(block);
    block.append(head, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.tabIndex = 0;
    table.replaceWith(wrap);
    wrap.append(table);
  }
  return fragment;
}

export function toFragment(markdown) {
  return decorate(sanitize(marked.parse(markdown)));
}

function sameAttributes(a, b) {
  if (a.attributes.length !== b.attributes.length) return false;
  for (const attr of a.attributes) {
    if (b.getAttribute(attr.name) !== attr.value) return false;
  }
  return true;
}

/** Make `parent`'s children look like `next`, touching only what differs. */
function morph(parent, next) {
  const previous = Array.from(parent.childNodes);
  next.forEach((node, i) => {
    const old = previous[i];
    if (!old) {
      parent.append(node);
    } else if (old.isEqualNode(node)) {
      // unchanged: keep it (and any selection inside it)
    } else if (old.nodeType === Node.TEXT_NODE && node.nodeType === Node.TEXT_NODE) {
      old.nodeValue = node.nodeValue;
    } else if (
      old.nodeType === Node.ELEMENT_NODE &&
      node.nodeType === Node.ELEMENT_NODE &&
      old.nodeName === node.nodeName &&
      sameAttributes(old, node)
    ) {
      morph(old, Array.from(node.childNodes));
    } else {
      parent.replaceChild(node, old);
    }
  });
  for (let i = next.length; i < previous.length; i++) previous[i].remove();
}

/** Render markdown into `container`, reusing what is already there. */
export function renderMarkdown(container, markdown) {
  morph(container, Array.from(toFragment(markdown).childNodes));
}
