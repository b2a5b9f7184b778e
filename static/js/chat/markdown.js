// Markdown for model output: marked parses, highlight.js colours code, DOMPurify sanitises, and the result is
// morphed into the page so a streaming answer grows without flicker (unchanged blocks are left alone).
//
// Model output is untrusted. Raw HTML in it is shown as text, not interpreted. DOMPurify then removes anything
// active that could remain: scripts, event handlers, forms, styles, frames, and links that are not http(s) or
// mailto. Links open in a new tab with rel="noopener noreferrer". Images are shown as links (no remote loads).
//
// Math: \( … \) and \[ … \] (what GPT-4o writes), $$ … $$, and $ … $ when it can't be a price. Only closed
// math is math: while an answer streams, a half-written formula stays text until its closing delimiter
// arrives. Math in code is code. KaTeX (vendored, with its stylesheet and fonts) is loaded the first time an
// answer has math; its output is sanitised by DOMPurify too (spans and SVG paths, checked inline styles).

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

// --- Math ---------------------------------------------------------------------------------------------

const MATH_CACHE_LIMIT = 500;
const mathCache = new Map(); // "d:" or "i:" + TeX -> a sanitised rendering, cloned for each use
const waitingForKatex = new Map(); // containers showing math as text until KaTeX arrives -> their markdown
let katex = null;
let katexLoading = null;

function loadKatex() {
  katexLoading ??= import("katex").then((module) => {
    katex = module.default;
    for (const [container, markdown] of waitingForKatex) {
      if (container.isConnected) renderMarkdown(container, markdown);
    }
    waitingForKatex.clear();
  }).catch(() => {
    katexLoading = null; // offline or blocked: the math stays readable as TeX; the next render tries again
  });
  if (!document.querySelector("link[data-katex]")) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = import.meta.resolve("katex-css");
    link.dataset.katex = "";
    document.head.append(link);
  }
  return katexLoading;
}

const mathToken = (type, raw, tex, display) => ({ type, raw, text: tex.trim(), display });
const mathHtml = ({ text, display }) => {
  const tag = display ? "div" : "span";
  return `<${tag} class="math ${display ? "math-display" : "math-inline"}">${escapeHtml(text)}</${tag}>`;
};

// $…$ is inline math only when it can't be a price: "$5 and $10" has a closing $ followed by a digit, and
// "$ 5" or "5 $" have a space inside the delimiters; neither is math.
const DOLLAR_INLINE = /^\$(?=[^\s$])((?:\\.|[^\\$\n])+?)(?<=[^\s\\])\$(?!\d)/;

const MATH_EXTENSIONS = [
  {
    name: "mathBlock",
    level: "block",
    start(src) {
      return src.match(/^ {0,3}(?:\$\$|\\\[)/m)?.index;
    },
    tokenizer(src) {
      const m = /^ {0,3}(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[ \t]*(?:\n+|$)/.exec(src);
      if (m) return mathToken("mathBlock", m[0], m[1] ?? m[2], true);
    },
    renderer: mathHtml,
  },
  {
    name: "mathInline",
    level: "inline",
    start(src) {
      return src.match(/\\[([]|\$/)?.index;
    },
    tokenizer(src) {
      let m = /^\\\(([\s\S]+?)\\\)/.exec(src);
      if (m) return mathToken("mathInline", m[0], m[1], false);
      m = /^\\\[([\s\S]+?)\\\]/.exec(src) || /^\$\$([\s\S]+?)\$\$/.exec(src);
      if (m) return mathToken("mathInline", m[0], m[1], true);
      m = DOLLAR_INLINE.exec(src);
      if (m) return mathToken("mathInline", m[0], m[1], false);
    },
    renderer: mathHtml,
  },
];

// What KaTeX's HTML output may contain once sanitised: its spans, the SVG of roots and stretchy arrows, and
// inline styles that are only lengths, numbers and colours (no url(), no expression()).
const SAFE_STYLE = /^(?:\s*[a-z-]+\s*:\s*[-#\w.%, ]+\s*;?)*\s*$/i;
const MATH_PURIFY_CONFIG = {
  ALLOWED_TAGS: ["span", "svg", "path", "line", "rect", "g"],
  ALLOWED_ATTR: [
    "class", "style", "aria-hidden", "viewBox", "width", "height", "preserveAspectRatio", "d", "x", "y",
    "x1", "y1", "x2", "y2", "stroke-width", "fill", "stroke",
  ],
  ALLOW_DATA_ATTR: false,
  IN_PLACE: true,
};

/** KaTeX's rendering of `tex`, sanitised, or null when KaTeX isn't loaded yet. */
function renderMath(tex, display) {
  const key = `${display ? "d" : "i"}:${tex}`;
  let rendered = mathCache.get(key);
  if (!rendered) {
    if (!katex) return null;
    rendered = document.createElement("span");
    try {
      katex.render(tex, rendered, {
        displayMode: display, output: "html", throwOnError: false, trust: false, strict: "ignore",
        maxSize: 50, maxExpand: 500,
      });
    } catch {
      rendered.textContent = tex; // never throw out of a render: the source stays readable
    }
    DOMPurify.sanitize(rendered, MATH_PURIFY_CONFIG);
    if (mathCache.size >= MATH_CACHE_LIMIT) mathCache.delete(mathCache.keys().next().value);
    mathCache.set(key, rendered);
  }
  return rendered.cloneNode(true);
}

/** Typeset the math placeholders of a sanitised fragment; false when KaTeX must be loaded first. */
function typeset(fragment) {
  const placeholders = fragment.querySelectorAll(".math");
  if (!placeholders.length) return true;
  if (!katex) {
    loadKatex();
    return false;
  }
  for (const element of placeholders) {
    const tex = element.textContent;
    const rendered = renderMath(tex, element.classList.contains("math-display"));
    if (!rendered) continue;
    element.setAttribute("role", "img");
    element.setAttribute("aria-label", tex);
    element.replaceChildren(...rendered.childNodes);
  }
  return true;
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  extensions: MATH_EXTENSIONS,
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

DOMPurify.addHook("uponSanitizeAttribute", (_node, data) => {
  if (data.attrName === "style" && !SAFE_STYLE.test(data.attrValue)) data.keepAttr = false;
});

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
  const fragment = decorate(sanitize(marked.parse(markdown)));
  fragment.mathPending = !typeset(fragment);
  return fragment;
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
  const fragment = toFragment(markdown);
  if (fragment.mathPending) waitingForKatex.set(container, markdown);
  morph(container, Array.from(fragment.childNodes));
}
