/* Small helpers every view shares: words, elements, times, sizes, messages.
 *
 * Elements are built with textContent only: nothing the server sends is parsed as HTML.
 */

export const words = JSON.parse(document.getElementById("words").textContent);
export const lang = document.body.dataset.lang === "en" ? "en" : "zh";
const LOCALE = lang === "zh" ? "zh-CN" : "en-GB";

// The one place times become text. `undefined` is the browser's own zone; a configured display
// zone (a later setting) plugs in here and every view follows.
export const TIME_ZONE = undefined;

export function t(key, values) {
  var template = Object.prototype.hasOwnProperty.call(words, key) ? words[key] : key;
  if (!values) {
    return template;
  }
  return template.replace(/\{(\w+)\}/g, function (whole, name) {
    return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
  });
}

export function fmtTime(iso, clockOnly) {
  if (!iso) {
    return "";
  }
  var moment = new Date(iso);
  if (isNaN(moment.getTime())) {
    return String(iso);
  }
  var date = clockOnly ? {} : { year: "numeric", month: "2-digit", day: "2-digit" };
  return new Intl.DateTimeFormat(LOCALE, {
    ...date,
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
    timeZone: TIME_ZONE,
    timeZoneName: "short",
  }).format(moment);
}

export function fmtDay(iso) {
  var moment = new Date(iso);
  if (!iso || isNaN(moment.getTime())) {
    return "";
  }
  return new Intl.DateTimeFormat(LOCALE, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    timeZone: TIME_ZONE,
  }).format(moment);
}

export function fmtSize(bytes) {
  if (bytes === null || bytes === undefined) {
    return "";
  }
  var units = ["B", "KiB", "MiB", "GiB", "TiB"];
  var value = Number(bytes);
  var i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i += 1;
  }
  return (i === 0 ? String(value) : value.toFixed(1)) + " " + units[i];
}

/* el("a", {href: "#x", class: "go"}, "text", child, ...) */
export function el(tag, attrs) {
  var node = document.createElement(tag);
  var given = attrs || {};
  Object.keys(given).forEach(function (name) {
    var value = given[name];
    if (value === undefined || value === null || value === false) {
      return;
    }
    if (name === "class") {
      node.className = value;
    } else if (name === "text") {
      node.textContent = String(value);
    } else if (name === "on") {
      Object.keys(value).forEach(function (event) {
        node.addEventListener(event, value[event]);
      });
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  });
  for (var i = 2; i < arguments.length; i += 1) {
    add(node, arguments[i]);
  }
  return node;
}

function add(node, child) {
  if (child === undefined || child === null || child === false) {
    return;
  }
  if (Array.isArray(child)) {
    child.forEach(function (c) {
      add(node, c);
    });
  } else if (typeof child === "string" || typeof child === "number") {
    node.appendChild(document.createTextNode(String(child)));
  } else {
    node.appendChild(child);
  }
}

export function clear(node) {
  while (node.firstChild) {
    node.removeChild(node.firstChild);
  }
  return node;
}

export function hash(value, className) {
  return el("code", { class: "hash" + (className ? " " + className : "") }, value || "");
}

/* A definition list from [label, value] pairs; empty values are left out. */
export function facts(pairs, className) {
  var list = el("dl", { class: "facts" + (className ? " " + className : "") });
  pairs.forEach(function (pair) {
    if (pair[1] === undefined || pair[1] === null || pair[1] === "") {
      return;
    }
    list.appendChild(el("dt", {}, pair[0]));
    list.appendChild(el("dd", {}, pair[1]));
  });
  return list;
}

export function table(headings, rows, className) {
  return scrolls(el(
    "table",
    { class: className || "grid" },
    el("thead", {}, el("tr", {}, headings.map(function (h) {
      return el("th", { scope: "col" }, h);
    }))),
    el("tbody", {}, rows.map(function (cells) {
      return el("tr", {}, cells.map(function (c) {
        return el("td", {}, c);
      }));
    }))
  ));
}

/* A wide table scrolls sideways inside its box instead of widening the page (tablets). */
export function scrolls(node) {
  return el("div", { class: "table-wrap" }, node);
}

var toastTimer = null;

export function toast(text) {
  var node = document.getElementById("toast");
  node.textContent = text || "";
  node.classList.toggle("shown", Boolean(text));
  window.clearTimeout(toastTimer);
  if (text) {
    toastTimer = window.setTimeout(function () {
      node.classList.remove("shown");
    }, 6000);
  }
}

/* An error from api.js as words a person can act on. */
export function problem(error) {
  if (error && error.status === 401) {
    return t("signed_out");
  }
  if (error && error.status === 403) {
    return t("not_allowed");
  }
  return t("failed", { message: (error && error.message) || String(error) });
}

/* "0123456789abcdef0123" -> "0123-4567-89ab-cdef-0123" */
export function grouped(code) {
  return String(code || "").replace(/(.{4})(?=.)/g, "$1-");
}

export function stateLabel(state) {
  return t("state_" + state);
}
