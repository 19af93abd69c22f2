/* Viewer links (access tickets): create one for a case or chosen items, see every link of the
 * agency with its views, revoke at once. The link and its access code are shown once, here,
 * as the API answers them only once.
 */
import * as api from "./api.js";
import { clear, el, fmtSize, fmtTime, problem, scrolls, stateLabel, t, table, toast } from "./dom.js";

var EXPIRIES = ["1d", "7d", "30d", "90d"];

function canIssue(me) {
  return me.role !== "auditor";
}

async function caseOptions(me) {
  if (me.role === "uploader") {
    return [];
  }
  try {
    return (await api.get("/api/cases")).cases;
  } catch (error) {
    return [];
  }
}

function field(id, label, input, hint) {
  return el("div", { class: "field" }, el("label", { for: id }, label), input, hint ? el("p", { class: "hint" }, hint) : null);
}

function createForm(ctx, cases, chosenCase, onIssued) {
  var form = el("form", { id: "link-form", class: "panel", novalidate: true });
  var target;
  if (cases.length) {
    target = el("select", { id: "link-case", name: "case" }, cases.map(function (c) {
      return el("option", { value: c.id, selected: c.id === chosenCase }, c.number + (c.title ? " · " + c.title : ""));
    }));
    form.appendChild(field("link-case", t("link_case"), target));
  } else {
    target = el("input", { id: "link-evidence", name: "evidence", spellcheck: "false" });
    form.appendChild(field("link-evidence", t("link_evidence"), target, t("link_evidence_hint")));
  }
  var recipient = el("input", { id: "link-recipient", name: "recipient", maxlength: "200", required: true });
  var expires = el("select", { id: "link-expires", name: "expires" }, EXPIRIES.map(function (value) {
    return el("option", { value: value, selected: value === "7d" }, t("expires_" + value));
  }));
  var views = el("input", { id: "link-views", name: "max_views", type: "number", min: "1", max: "1000", inputmode: "numeric" });
  var code = el("input", { id: "link-code", name: "access_code", type: "checkbox", checked: true });
  var download = el("input", { id: "link-download", name: "download", type: "checkbox" });
  var note = el("input", { id: "link-note", name: "note", maxlength: "500" });
  form.appendChild(field("link-recipient", t("link_recipient"), recipient, t("link_recipient_hint")));
  form.appendChild(field("link-expires", t("link_expires"), expires));
  form.appendChild(field("link-views", t("link_views"), views, t("link_views_hint")));
  form.appendChild(el("div", { class: "field check" }, code, el("label", { for: "link-code" }, t("link_code"))));
  form.appendChild(el("div", { class: "field check" }, download, el("label", { for: "link-download" }, t("link_download"))));
  form.appendChild(field("link-note", t("link_note"), note));
  var submit = el("button", { type: "submit", class: "primary", id: "link-create" }, t("link_create"));
  var status = el("p", { class: "status", role: "alert" });
  form.appendChild(el("div", { class: "actions" }, submit));
  form.appendChild(status);

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    status.textContent = "";
    if (!recipient.value.trim()) {
      status.textContent = t("link_need_recipient");
      recipient.focus();
      return;
    }
    var body = {
      recipient: recipient.value.trim(),
      expires: expires.value,
      access_code: code.checked,
      download: download.checked,
    };
    if (cases.length) {
      body.case = target.value;
    } else {
      body.evidence = target.value.split(/[\s,]+/).filter(Boolean);
    }
    if (views.value) {
      body.max_views = parseInt(views.value, 10);
    }
    if (note.value.trim()) {
      body.note = note.value.trim();
    }
    submit.disabled = true;
    try {
      var issued = await api.post("/api/tickets", body);
      onIssued(issued);
      form.reset();
      toast(t("link_created_toast"));
    } catch (error) {
      status.textContent = problem(error);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function issuedPanel(issued) {
  var url = el("input", { id: "issued-url", readonly: true, value: issued.url, "aria-label": t("link_url") });
  var copy = el("button", { type: "button" }, t("copy"));
  copy.addEventListener("click", async function () {
    url.select();
    try {
      await navigator.clipboard.writeText(issued.url);
      toast(t("copied"));
    } catch (e) {
      toast(t("copy_by_hand"));
    }
  });
  return el(
    "section",
    { class: "issued panel", role: "status" },
    el("h3", {}, t("link_issued", { recipient: issued.ticket.recipient })),
    el("div", { class: "copy-row" }, url, copy),
    issued.access_code ? el("p", {}, t("link_code_is"), " ", el("strong", { id: "issued-code", class: "code" }, issued.access_code)) : null,
    el("p", { class: "hint" }, t("link_once"))
  );
}

async function viewsOf(ticket, into) {
  var found = await api.get("/api/tickets/" + api.enc(ticket.id) + "/views");
  clear(into);
  if (!found.views.length) {
    into.appendChild(el("p", { class: "empty" }, t("views_none")));
    return;
  }
  into.appendChild(
    table(
      [t("col_started"), t("col_evidence"), t("col_bytes"), t("col_client")],
      found.views.map(function (v) {
        return [fmtTime(v.started_at), v.evidence || "", fmtSize(v.bytes_served), v.client || ""];
      }),
      "grid views"
    )
  );
}

function ticketRows(ctx, tickets, caseNames) {
  return tickets.map(function (ticket) {
    var details = el("div", { class: "views-of", id: "views-" + ticket.id });
    var viewsButton = el("button", { type: "button", class: "link views" }, t("views_show", { n: ticket.views_used }));
    viewsButton.addEventListener("click", function () {
      viewsOf(ticket, details).catch(function (error) {
        details.textContent = problem(error);
      });
    });
    var actions = [viewsButton];
    if (canIssue(ctx.me) && ticket.state === "active") {
      var revoke = el("button", { type: "button", class: "danger revoke" }, t("revoke"));
      revoke.addEventListener("click", async function () {
        if (!window.confirm(t("revoke_confirm", { recipient: ticket.recipient }))) {
          return;
        }
        revoke.disabled = true;
        try {
          await api.post("/api/tickets/" + api.enc(ticket.id) + "/revoke");
          toast(t("revoked_toast"));
          ctx.refresh();
        } catch (error) {
          revoke.disabled = false;
          toast(problem(error));
        }
      });
      actions.push(revoke);
    }
    var limit = ticket.max_views ? ticket.views_used + " / " + ticket.max_views : String(ticket.views_used);
    return el(
      "tr",
      { "data-ticket": ticket.id, class: "link-row " + ticket.state },
      el("td", {}, ticket.recipient || "—"),
      el("td", {}, ticket.case ? caseNames[ticket.case] || ticket.case : t("items_n", { n: ticket.evidence.length })),
      el("td", {}, el("span", { class: "state " + ticket.state }, stateLabel(ticket.state))),
      el("td", {}, ticket.permissions.indexOf("download") >= 0 ? t("perm_download") : t("perm_view"), ticket.access_code ? " · " + t("perm_code") : ""),
      el("td", {}, limit),
      el("td", {}, fmtTime(ticket.expires_at)),
      el("td", {}, el("div", { class: "row-actions" }, actions), details)
    );
  });
}

export async function render(ctx, args) {
  var main = ctx.main;
  main.appendChild(el("h2", {}, t("links_title")));
  var cases = await caseOptions(ctx.me);
  var caseNames = {};
  cases.forEach(function (c) {
    caseNames[c.number] = c.number + (c.title ? " · " + c.title : "");
  });
  var issuedSlot = el("div", { id: "issued" });
  if (canIssue(ctx.me)) {
    main.appendChild(el("h3", {}, t("link_new")));
    main.appendChild(createForm(ctx, cases, args[0], async function (issued) {
      await drawList();
      clear(issuedSlot).appendChild(issuedPanel(issued));
    }));
  }
  main.appendChild(issuedSlot);
  var listSlot = el("section", { "aria-labelledby": "links-h" }, el("h3", { id: "links-h" }, t("links_list")));
  main.appendChild(listSlot);

  async function drawList() {
    var tickets = (await api.get("/api/tickets")).tickets;
    while (listSlot.childNodes.length > 1) {
      listSlot.removeChild(listSlot.lastChild);
    }
    if (!tickets.length) {
      listSlot.appendChild(el("p", { class: "empty" }, t("links_empty")));
      return;
    }
    var head = [t("col_recipient"), t("col_case"), t("col_state"), t("col_permissions"), t("col_views"), t("col_expires"), ""];
    listSlot.appendChild(scrolls(
      el("table", { class: "grid tickets" },
        el("thead", {}, el("tr", {}, head.map(function (h) {
          return el("th", { scope: "col" }, h);
        }))),
        el("tbody", {}, ticketRows(ctx, tickets, caseNames)))
    ));
  }
  await drawList();
}
