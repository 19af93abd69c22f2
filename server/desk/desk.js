/* The desk: sign in once per tab, then the views the token's role may use.
 *
 * Views are chosen by the address's fragment (#inbox, #case/<id>, #list/transfer/<id>, ...):
 * ids only, never the token, so a fragment can be bookmarked, printed and shared safely.
 */
import * as api from "./api.js";
import { clear, el, t, toast } from "./dom.js";
import * as inbox from "./inbox.js";
import * as cases from "./cases.js";
import * as links from "./links.js";
import * as paper from "./paper.js";
import * as admin from "./admin.js";

var main = document.getElementById("view");
var form = document.getElementById("sign-in");
var tabs = document.getElementById("tabs");
var who = document.getElementById("who");
var signOut = document.getElementById("sign-out");
var langLink = document.getElementById("lang");
var baseLangHref = langLink.getAttribute("href");
var me = null;

// What each role sees; storage administration also needs the site's own agency (me.site).
var TABS = [
  { id: "inbox", roles: ["handler", "admin", "auditor"] },
  { id: "cases", roles: ["handler", "admin", "auditor"] },
  { id: "links", roles: ["uploader", "handler", "admin", "auditor"] },
  { id: "admin", roles: ["admin", "auditor"], site: true },
];

function allowed(tab) {
  return me && tab.roles.indexOf(me.role) >= 0 && (!tab.site || me.site);
}

function drawTabs(current) {
  clear(tabs);
  TABS.filter(allowed).forEach(function (tab) {
    var link = el("a", { href: "#" + tab.id, id: "tab-" + tab.id }, t("tab_" + tab.id));
    if (tab.id === current) {
      link.setAttribute("aria-current", "page");
    }
    tabs.appendChild(link);
  });
  tabs.hidden = false;
}

var ROUTES = {
  inbox: inbox.render,
  cases: cases.renderList,
  case: cases.renderCase,
  links: links.render,
  admin: admin.render,
  list: paper.render,
  verify: paper.renderCheck,
};

function route() {
  var parts = (window.location.hash || "").replace(/^#/, "").split("/").map(decodeURIComponent);
  var name = parts[0];
  var first = TABS.filter(allowed)[0];
  if (!ROUTES[name]) {
    name = first ? first.id : "links";
    parts = [name];
  }
  var tab = TABS.filter(function (x) {
    return x.id === name;
  })[0];
  if (tab && !allowed(tab)) {
    name = first.id;
    parts = [name];
  }
  return { name: name, args: parts.slice(1) };
}

async function show() {
  if (!me) {
    return;
  }
  var chosen = route();
  var section = { inbox: "inbox", case: "cases", cases: "cases", links: "links", admin: "admin" };
  drawTabs(section[chosen.name] || "");
  langLink.setAttribute("href", baseLangHref + window.location.hash);
  document.body.dataset.view = chosen.name;
  clear(main);
  var ctx = { me: me, main: main, refresh: show };
  try {
    await ROUTES[chosen.name](ctx, chosen.args);
  } catch (error) {
    if (error && error.status === 401) {
      leave(t("signed_out"));
      return;
    }
    main.appendChild(el("p", { class: "status", role: "alert" }, t("failed", { message: error.message })));
  }
}

function leave(message) {
  api.forget();
  me = null;
  clear(main);
  main.appendChild(form);
  form.reset();
  tabs.hidden = true;
  signOut.hidden = true;
  who.textContent = "";
  document.getElementById("sign-in-status").textContent = message || "";
  document.getElementById("token").focus();
}

async function enter(secret) {
  me = await api.call("GET", "/api/me", undefined, secret);
  api.remember(secret);
  who.textContent = t("who", { name: me.name, role: t("role_" + me.role), agency: me.agency.name });
  signOut.textContent = t("sign_out");
  signOut.hidden = false;
  await show();
}

form.addEventListener("submit", async function (event) {
  event.preventDefault();
  var status = document.getElementById("sign-in-status");
  var secret = document.getElementById("token").value.trim();
  if (!secret) {
    status.textContent = t("need_token");
    return;
  }
  status.textContent = t("signing_in");
  try {
    await enter(secret);
    main.focus();
  } catch (error) {
    me = null;
    api.forget();
    status.textContent = error.status === 401 ? t("bad_token") : t("failed", { message: error.message });
  }
});

signOut.addEventListener("click", function () {
  leave("");
  toast(t("signed_out_done"));
});

window.addEventListener("hashchange", function () {
  toast("");
  show();
});

if (api.token()) {
  enter(api.token()).catch(function () {
    leave(t("signed_out"));
  });
}
