/* The printable transfer list (随案移送清单) of a transfer or a case, and the page its QR code
 * and short code lead to, which checks a printed list against the server's record.
 *
 * The list is a print-ready part of this page: the print style sheet leaves out everything but
 * the paper, so the browser's "print" (or "save as PDF") gives the list alone.
 */
import * as api from "./api.js";
import { el, facts, fmtSize, fmtTime, grouped, hash, stateLabel, t } from "./dom.js";

function source(kind, id) {
  var base = kind === "case" ? "/api/cases/" : "/api/transfers/";
  return base + api.enc(id) + "/list";
}

function people(list) {
  if (list.kind === "transfer") {
    var x = list.transfer;
    return facts([
      [t("from"), (list.from || {}).name],
      [t("to"), (list.to || {}).name],
      [t("sent_by"), x.sent_by],
      [t("sent_at"), fmtTime(x.sent_at)],
      [t("col_state"), stateLabel(x.state)],
      [t("acknowledged_by"), x.acknowledged_by || (x.state === "pending" ? t("not_yet") : "")],
      [t("decided_at"), fmtTime(x.decided_at)],
      [t("reason"), x.reason],
      [t("transfer_id"), x.transfer],
      [t("manifest_sha256"), hash(list.manifest_sha256)],
      [t("manifest_signed"), list.signed_by],
      [t("ack_signed_by"), list.acknowledgement_signed_by],
    ], "paper-facts");
  }
  return facts([[t("owner"), list.owner.name], [t("case_id"), list.case.id]], "paper-facts");
}

function itemRows(list) {
  return list.items.map(function (item, index) {
    var moved = item.sent_by
      ? el("div", { class: "moved" }, t("sent_by") + ": " + item.sent_by, el("br"), t("acknowledged_by") + ": " + (item.acknowledged_by || "—"))
      : el("div", { class: "moved" }, "—");
    return el(
      "tr",
      { "data-evidence": item.evidence_id },
      el("td", { class: "n" }, String(index + 1)),
      el("td", {}, el("div", { class: "name" }, item.filename || ""), el("div", { class: "sub" }, [item.item, item.kind].filter(Boolean).join(" · ")), el("div", { class: "sub" }, hash(item.evidence_id)), item.uploaded_by ? el("div", { class: "sub" }, t("uploaded_by") + ": " + item.uploaded_by) : null),
      el("td", { class: "size" }, String(item.size), el("div", { class: "sub" }, fmtSize(item.size))),
      el("td", {}, el("div", {}, "BLAKE3 ", hash(item.blake3, "blake3")), el("div", {}, "SHA-256 ", hash(item.sha256, "sha256")), item.sm3 ? el("div", {}, "SM3 ", hash(item.sm3, "sm3")) : null),
      el("td", {}, hash(item.receipt_id || "—", "receipt")),
      el("td", {}, moved)
    );
  });
}

export function paper(list) {
  var c = list.case || {};
  var verify = list.verify;
  return el(
    "article",
    { class: "paper", id: "paper" },
    el("header", { class: "paper-head" },
      el("h2", {}, list.kind === "transfer" ? t("paper_title_transfer") : t("paper_title_case")),
      el("p", { class: "paper-case" }, t("case_heading", { number: c.number || c.id, title: c.title || "" }).trim())),
    people(list),
    el("table", { class: "paper-items" },
      el("thead", {}, el("tr", {}, [t("col_n"), t("col_file"), t("col_bytes"), t("col_digests"), t("col_receipt"), t("col_moved")].map(function (h) {
        return el("th", { scope: "col" }, h);
      }))),
      el("tbody", {}, itemRows(list)),
      el("tfoot", {}, el("tr", {}, el("td", { colspan: "2" }, t("total_items", { n: list.items.length })), el("td", { class: "size" }, String(list.total_bytes)), el("td", { colspan: "3" }, fmtSize(list.total_bytes))))),
    el("section", { class: "verify" },
      el("img", { class: "qr", src: verify.qr, alt: t("qr_alt"), width: "132", height: "132" }),
      el("div", {},
        el("h3", {}, t("verify_title")),
        el("p", {}, t("verify_code"), " ", el("strong", { class: "code", id: "verify-code" }, grouped(verify.code))),
        el("p", { class: "url" }, t("verify_online"), " ", el("span", { class: "hash" }, verify.url)),
        el("p", {}, t("verify_offline"), " ", el("code", {}, verify.command)),
        el("p", { class: "hint" }, t("verify_offline_hint")))),
    el("section", { class: "signatures" },
      el("div", {}, t("sign_handed")),
      el("div", {}, t("sign_received")),
      el("div", {}, t("sign_date"))),
    el("p", { class: "printed" }, t("printed_at", { time: fmtTime(new Date().toISOString()) }))
  );
}

export async function render(ctx, args) {
  var kind = args[0] === "case" ? "case" : "transfer";
  var list = await api.get(source(kind, args[1]));
  var back = kind === "case" ? "#case/" + api.enc(args[1]) : "#inbox";
  var print = el("button", { type: "button", class: "primary", id: "print" }, t("print"));
  print.addEventListener("click", function () {
    window.print();
  });
  ctx.main.appendChild(el("div", { class: "actions no-print" }, el("a", { class: "button", href: back }, t("back")), print));
  ctx.main.appendChild(paper(list));
}

export async function renderCheck(ctx, args) {
  var kind = args[0] === "case" ? "case" : "transfer";
  var printed = String(args[2] || "").replace(/[^0-9a-f]/gi, "").toLowerCase();
  var list = await api.get(source(kind, args[1]));
  var same = printed.length > 0 && printed === list.verify.code;
  ctx.main.appendChild(el("h2", {}, t("check_title")));
  ctx.main.appendChild(
    el("p", { class: "verdict " + (same ? "ok" : "bad"), role: "status", id: "verdict" },
      same ? t("check_same") : t("check_differs", { printed: grouped(printed), now: grouped(list.verify.code) }))
  );
  ctx.main.appendChild(paper(list));
}
