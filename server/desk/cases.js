/* Cases of the agency: the list, then one case with its items (digests, media facts,
 * continuity) and its custody timeline drawn as a timeline: who did what, when, with the
 * hand-overs between agencies and every view marked. The case page prints as it shows.
 */
import * as api from "./api.js";
import { el, facts, fmtDay, fmtSize, fmtTime, hash, stateLabel, t, table } from "./dom.js";

// Custody steps (server/cases/custody.py STEPS) by the kind of mark the timeline draws.
var KINDS = {
  uploaded: "custody",
  hashed: "custody",
  verified: "custody",
  integrity_failed: "alarm",
  transferred: "handover",
  acknowledged: "handover",
  rejected: "handover",
  viewed: "view",
  downloaded: "view",
  exported: "export",
};

export async function renderList(ctx) {
  var main = ctx.main;
  main.appendChild(el("h2", {}, t("cases_title")));
  var cases = (await api.get("/api/cases")).cases;
  if (!cases.length) {
    main.appendChild(el("p", { class: "empty" }, t("cases_empty")));
    return;
  }
  main.appendChild(
    table(
      [t("col_case"), t("col_title"), t("col_status"), t("col_holders"), t("col_created")],
      cases.map(function (c) {
        return [
          el("a", { href: "#case/" + api.enc(c.id), class: "case-link" }, c.number),
          c.title || "",
          t("case_" + c.status),
          String(c.agencies.length),
          fmtTime(c.created_at),
        ];
      }),
      "grid cases"
    )
  );
}

function clock(seconds) {
  var whole = Math.max(0, Math.round(Number(seconds) || 0));
  var h = Math.floor(whole / 3600);
  var m = Math.floor((whole % 3600) / 60);
  var s = whole % 60;
  var two = function (n) {
    return (n < 10 ? "0" : "") + n;
  };
  return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
}

function mediaText(probe) {
  if (!probe) {
    return t("media_pending");
  }
  var parts = [probe.container || "?"];
  (probe.streams || []).forEach(function (s) {
    if (s.kind === "video" && !s.still) {
      parts.push([s.codec, s.width ? s.width + "x" + s.height : ""].filter(Boolean).join(" "));
    } else if (s.kind === "audio") {
      parts.push([s.codec, s.channels ? s.channels + "ch" : ""].filter(Boolean).join(" "));
    }
  });
  var text = parts.join(" · ");
  return probe.duration !== undefined && probe.duration !== null ? text + " · " + clock(probe.duration) : text;
}

function continuityText(report) {
  if (!report) {
    return "";
  }
  if (report.ok) {
    return t("continuity_ok");
  }
  var counts = report.counts || {};
  return t("continuity_bad", {
    gaps: counts.gaps || (report.gaps || []).length,
    back: counts.discontinuities || (report.discontinuities || []).length,
    dropped: counts.dropped || (report.dropped || []).length,
  });
}

function itemCard(record) {
  return el(
    "article",
    { class: "card item", id: "item-" + record.id },
    el("h4", {}, record.filename || record.id),
    facts([
      [t("col_item"), record.item],
      [t("col_kind"), (record.metadata || {}).kind],
      [t("col_size"), fmtSize(record.size) + " (" + record.size + " B)"],
      ["BLAKE3", hash(record.blake3, "blake3")],
      ["SHA-256", hash(record.sha256, "sha256")],
      ["SM3", record.sm3 ? hash(record.sm3, "sm3") : ""],
      [t("received_at"), fmtTime(record.received_at)],
      [t("integrity"), t("integrity_" + record.integrity) + (record.checked_at ? " · " + fmtTime(record.checked_at) : "")],
      [t("media"), mediaText(record.media)],
      [t("continuity"), continuityText(record.continuity)],
      [t("evidence_id"), hash(record.id)],
    ])
  );
}

function detail(step, names) {
  var name = function (id) {
    return names[id] || id || "";
  };
  if (step.step === "hashed" && step.digests) {
    return Object.keys(step.digests).map(function (k) {
      return el("div", { class: "digest" }, k.toUpperCase() + " ", hash(step.digests[k]));
    });
  }
  if (KINDS[step.step] === "handover") {
    return [
      t("handover", { from: name(step.from), to: name(step.to), n: (step.evidence || []).length }),
      step.reason ? " · " + t("reason_is", { reason: step.reason }) : "",
    ];
  }
  if (KINDS[step.step] === "view") {
    return t("viewed_by", { recipient: step.recipient || "?", bytes: fmtSize(step.bytes || 0) });
  }
  return step.object;
}

export function timeline(steps, names) {
  var list = el("ol", { class: "timeline" });
  var lastDay = "";
  steps.forEach(function (step) {
    var kind = KINDS[step.step] || "custody";
    var today = fmtDay(step.time);
    if (today !== lastDay) {
      list.appendChild(el("li", { class: "day" }, el("span", {}, today)));
      lastDay = today;
    }
    list.appendChild(
      el(
        "li",
        { class: "step " + kind, "data-step": step.step },
        el("time", { datetime: step.time, title: fmtTime(step.time) }, fmtTime(step.time, true)),
        el("span", { class: "mark", "aria-hidden": "true" }),
        el("div", { class: "what" },
          el("strong", {}, t("step_" + step.step)),
          el("span", { class: "actor" }, step.actor),
          el("div", { class: "detail" }, detail(step, names)))
      )
    );
  });
  return list;
}

function legend() {
  return el("ul", { class: "legend", "aria-label": t("legend") }, ["custody", "handover", "view", "export", "alarm"].map(function (k) {
    return el("li", { class: k }, el("span", { class: "mark", "aria-hidden": "true" }), t("kind_" + k));
  }));
}

export async function renderCase(ctx, args) {
  var main = ctx.main;
  var id = args[0];
  var found = await api.get("/api/cases/" + api.enc(id));
  var custody = await api.get("/api/cases/" + api.enc(id) + "/custody");
  var transfers = (await api.get("/api/transfers")).transfers.filter(function (x) {
    return x.case === id;
  });
  var names = {};
  names[ctx.me.agency.id] = ctx.me.agency.name;
  transfers.forEach(function (x) {
    var b = (x.manifest && x.manifest.manifest) || {};
    [b.from, b.to].forEach(function (a) {
      if (a && a.id) {
        names[a.id] = a.name;
      }
    });
  });
  main.appendChild(el("p", { class: "crumbs no-print" }, el("a", { href: "#cases" }, t("tab_cases")), " / ", found.number));
  main.appendChild(el("h2", {}, t("case_heading", { number: found.number, title: found.title || "" }).trim()));
  main.appendChild(
    facts([
      [t("owner"), names[found.owner] || found.owner],
      [t("col_status"), t("case_" + found.status)],
      [t("col_created"), fmtTime(found.created_at)],
      [t("holders"), found.agencies.map(function (a) {
        return names[a] || a;
      }).join(", ")],
    ])
  );
  var printButton = el("button", { type: "button" }, t("print_page"));
  printButton.addEventListener("click", function () {
    window.print();
  });
  var actions = el("div", { class: "actions no-print" },
    printButton,
    el("a", { class: "button", href: "#list/case/" + api.enc(id) }, t("print_list")),
    ctx.me.role !== "auditor" ? el("a", { class: "button", href: "#links/" + api.enc(id) }, t("link_for_case")) : null);
  main.appendChild(actions);

  var items = el("section", { class: "items", "aria-labelledby": "items-h" }, el("h3", { id: "items-h" }, t("items_title", { n: found.evidence.length })));
  main.appendChild(items);
  for (var i = 0; i < found.evidence.length; i += 1) {
    var record = found.evidence[i];
    try {
      record = await api.get("/api/evidence/" + api.enc(record.id));
    } catch (error) {
      /* purged or gone: the case's own copy of the record is shown */
    }
    items.appendChild(itemCard(record));
  }
  if (transfers.length) {
    main.appendChild(
      el("section", { class: "moves" }, el("h3", {}, t("transfers_title")),
        table(
          [t("from"), t("to"), t("col_state"), t("sent_at"), t("col_by"), ""],
          transfers.map(function (x) {
            return [names[x.from] || x.from, names[x.to] || x.to, stateLabel(x.state), fmtTime(x.created_at), x.decided_by || x.created_by,
              el("a", { class: "no-print", href: "#list/transfer/" + api.enc(x.id) }, t("print_list"))];
          }),
          "grid"
        ))
    );
  }
  var section = el("section", { class: "custody", "aria-labelledby": "custody-h" }, el("h3", { id: "custody-h" }, t("custody_title")), legend());
  if (!custody.timeline.length) {
    section.appendChild(el("p", { class: "empty" }, t("custody_empty")));
  } else {
    section.appendChild(timeline(custody.timeline, names));
  }
  main.appendChild(section);
}
