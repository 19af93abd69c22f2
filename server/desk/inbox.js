/* The inbox: transfers sent to this agency. Pending ones show their signed manifest and can be
 * reviewed in the viewer, acknowledged (the server checks the signature and every digest
 * first, and the page shows what it checked) or rejected with a reason. Decided and sent
 * transfers follow, each with its printable list.
 */
import * as api from "./api.js";
import { clear, el, facts, fmtSize, fmtTime, hash, problem, stateLabel, t, table, toast } from "./dom.js";

function canAct(me) {
  return me.role === "handler" || me.role === "admin";
}

function body(transfer) {
  return (transfer.manifest && transfer.manifest.manifest) || {};
}

function caseTitle(transfer) {
  var c = body(transfer).case || {};
  return t("case_heading", { number: c.number || transfer.case, title: c.title || "" }).trim();
}

function itemsTable(items) {
  return table(
    [t("col_file"), t("col_item"), t("col_kind"), t("col_size"), "BLAKE3", "SHA-256"],
    items.map(function (i) {
      return [i.filename || i.evidence_id, i.item || "", i.kind || "", fmtSize(i.size), hash(i.blake3, "blake3"), hash(i.sha256, "sha256")];
    }),
    "grid items"
  );
}

function limitsText(limits) {
  if (!limits) {
    return "";
  }
  var parts = [];
  parts.push(limits.tickets === false ? t("limit_no_tickets") : t("limit_tickets"));
  parts.push(limits.download ? t("limit_download") : t("limit_no_download"));
  if (limits.max_ticket_days) {
    parts.push(t("limit_days", { n: limits.max_ticket_days }));
  }
  return parts.join(" · ");
}

function checkedPanel(done) {
  var ack = (done.acknowledgement && done.acknowledgement.acknowledgement) || {};
  var items = ack.items || [];
  return el(
    "section",
    { class: "checked", "aria-labelledby": "checked-" + done.id },
    el("h4", { id: "checked-" + done.id }, t("ack_done")),
    el("ul", { class: "checks" },
      el("li", {}, t("check_signature", { key: done.manifest.key_id })),
      el("li", {}, t("check_digests", { n: items.length })),
      el("li", {}, t("check_integrity")),
      ack.sender_log ? el("li", {}, t("check_sender_log")) : null
    ),
    table(
      [t("col_evidence"), "BLAKE3", "SHA-256", t("col_checked_by")],
      items.map(function (i) {
        return [hash(i.evidence_id), hash(i.blake3, "blake3"), hash(i.sha256, "sha256"), t("checked_by_" + i.checked_by)];
      }),
      "grid ack-items"
    ),
    facts([
      [t("ack_signed_by"), done.acknowledgement.key_id],
      [t("decided_by"), done.decided_by],
      [t("decided_at"), fmtTime(done.decided_at)],
    ])
  );
}

function pendingCard(ctx, transfer) {
  var manifest = body(transfer);
  var status = el("p", { class: "status", role: "alert" });
  var result = el("div", { class: "result" });
  var card = el("article", { class: "card transfer pending", id: "transfer-" + transfer.id, "data-transfer": transfer.id });
  card.appendChild(el("h3", {}, caseTitle(transfer)));
  card.appendChild(
    facts([
      [t("from"), (manifest.from || {}).name || transfer.from],
      [t("sent_by"), transfer.created_by],
      [t("sent_at"), fmtTime(transfer.created_at)],
      [t("note"), transfer.note],
      [t("limits"), limitsText(transfer.limits)],
      [t("manifest_signed"), t("manifest_key", { key: transfer.manifest.key_id, algorithm: transfer.manifest.algorithm })],
      [t("transfer_id"), hash(transfer.id)],
    ])
  );
  card.appendChild(itemsTable(manifest.items || []));
  var actions = el("div", { class: "actions" });
  card.appendChild(actions);
  card.appendChild(status);
  card.appendChild(result);
  actions.appendChild(el("a", { class: "button secondary", href: "#list/transfer/" + api.enc(transfer.id) }, t("print_list")));
  if (!canAct(ctx.me)) {
    return card;
  }
  var review = el("button", { type: "button", class: "review" }, t("review"));
  var ack = el("button", { type: "button", class: "ack primary" }, t("acknowledge"));
  var reject = el("button", { type: "button", class: "reject danger" }, t("reject"));
  actions.prepend(reject);
  actions.prepend(ack);
  actions.prepend(review);

  review.addEventListener("click", async function () {
    review.disabled = true;
    try {
      var issued = await api.post("/api/transfers/" + api.enc(transfer.id) + "/review");
      clear(result).appendChild(
        el("p", { class: "review-link" }, t("review_ready", { time: fmtTime(issued.ticket.expires_at) }), " ",
          el("a", { href: issued.url, target: "_blank", rel: "noopener noreferrer" }, t("review_open")))
      );
      window.open(issued.url, "_blank", "noopener,noreferrer");
    } catch (error) {
      status.textContent = problem(error);
    } finally {
      review.disabled = false;
    }
  });

  ack.addEventListener("click", async function () {
    ack.disabled = true;
    status.textContent = t("ack_checking");
    try {
      var done = await api.post("/api/transfers/" + api.enc(transfer.id) + "/ack", {});
      status.textContent = "";
      card.classList.remove("pending");
      card.classList.add("acknowledged");
      clear(actions).appendChild(el("a", { class: "button secondary", href: "#list/transfer/" + api.enc(transfer.id) }, t("print_list")));
      clear(result).appendChild(checkedPanel(done));
      toast(t("ack_toast"));
    } catch (error) {
      ack.disabled = false;
      if (error.code === "transfer_blocked") {
        status.textContent = t("ack_blocked");
        clear(result).appendChild(
          el("ul", { class: "problems" }, (error.details.problems || []).map(function (p) {
            return el("li", {}, p);
          }))
        );
      } else {
        status.textContent = problem(error);
      }
    }
  });

  reject.addEventListener("click", function () {
    var reason = el("textarea", { id: "reason-" + transfer.id, maxlength: "2000", rows: "3", required: true });
    var send = el("button", { type: "submit", class: "danger" }, t("reject_send"));
    var cancel = el("button", { type: "button" }, t("cancel"));
    var box = el("form", { class: "reason", novalidate: true }, el("label", { for: "reason-" + transfer.id }, t("reject_reason")), reason, el("div", { class: "actions" }, send, cancel));
    clear(result).appendChild(box);
    reason.focus();
    cancel.addEventListener("click", function () {
      clear(result);
    });
    box.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (!reason.value.trim()) {
        status.textContent = t("reject_need_reason");
        reason.focus();
        return;
      }
      send.disabled = true;
      try {
        var done = await api.post("/api/transfers/" + api.enc(transfer.id) + "/reject", { reason: reason.value });
        card.classList.remove("pending");
        card.classList.add("rejected");
        clear(actions);
        status.textContent = "";
        clear(result).appendChild(el("p", { class: "decided" }, t("rejected_done", { reason: done.reason })));
        toast(t("reject_toast"));
      } catch (error) {
        send.disabled = false;
        status.textContent = problem(error);
      }
    });
  });
  return card;
}

function decidedTable(transfers, mine) {
  return table(
    [t("col_case"), mine ? t("to") : t("from"), t("col_state"), t("col_when"), t("col_by"), t("col_items"), ""],
    transfers.map(function (x) {
      var b = body(x);
      var other = mine ? b.to : b.from;
      return [
        caseTitle(x),
        (other || {}).name || (mine ? x.to : x.from),
        el("span", { class: "state " + x.state }, stateLabel(x.state)),
        fmtTime(x.decided_at || x.created_at),
        x.decided_by || x.created_by,
        String((x.evidence || []).length),
        el("a", { href: "#list/transfer/" + api.enc(x.id) }, t("print_list")),
      ];
    }),
    "grid transfers"
  );
}

export async function render(ctx) {
  var main = ctx.main;
  main.appendChild(el("h2", {}, t("inbox_title")));
  var received = (await api.get("/api/transfers?inbox=1")).transfers;
  var all = (await api.get("/api/transfers")).transfers;
  var pending = received.filter(function (x) {
    return x.state === "pending";
  });
  var pendingSection = el("section", { class: "pending-list", "aria-labelledby": "pending-h" }, el("h3", { id: "pending-h" }, t("pending_title", { n: pending.length })));
  if (!pending.length) {
    pendingSection.appendChild(el("p", { class: "empty" }, t("inbox_empty")));
  }
  pending.forEach(function (x) {
    pendingSection.appendChild(pendingCard(ctx, x));
  });
  main.appendChild(pendingSection);
  var decided = received.filter(function (x) {
    return x.state !== "pending";
  });
  if (decided.length) {
    main.appendChild(el("section", { "aria-labelledby": "decided-h" }, el("h3", { id: "decided-h" }, t("decided_title")), decidedTable(decided, false)));
  }
  var sent = all.filter(function (x) {
    return x.from === ctx.me.agency.id;
  });
  if (sent.length) {
    main.appendChild(el("section", { "aria-labelledby": "sent-h" }, el("h3", { id: "sent-h" }, t("sent_title")), decidedTable(sent, true)));
  }
}
