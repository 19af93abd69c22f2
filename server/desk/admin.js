/* Storage administration (the site operator's admins and auditors): legal holds, retention
 * classes and what a purge would do now, usage charts by case, class and agency, the integrity
 * scrub's findings and the audit log's state. Admins may place and lift holds here; purging
 * stays a deliberate command (`avidence-server purge`), shown here only as its dry run.
 */
import * as api from "./api.js";
import { el, facts, fmtSize, fmtTime, hash, problem, t, table, toast } from "./dom.js";

var SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  var node = document.createElementNS(SVG, tag);
  Object.keys(attrs).forEach(function (name) {
    node.setAttribute(name, String(attrs[name]));
  });
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/* Horizontal bars of bytes, labelled with the key and the size; drawn in SVG attributes, so
 * no inline style is needed under the page's Content-Security-Policy. */
export function bars(rows, label) {
  var shown = rows.slice(0, 12);
  var most = Math.max.apply(null, shown.map(function (r) {
    return r.bytes;
  }).concat([1]));
  var row = 26;
  var width = 640;
  var labelWidth = 200;
  var chart = svg("svg", { class: "bars", viewBox: "0 0 " + width + " " + (row * shown.length + 4), role: "img", "aria-label": label });
  shown.forEach(function (r, i) {
    var y = i * row + 2;
    var length = Math.max(2, Math.round(((width - labelWidth - 110) * r.bytes) / most));
    var name = r.name || r.key || t("unnamed");
    chart.appendChild(svg("text", { x: 0, y: y + 17, class: "key" }, name.length > 26 ? name.slice(0, 25) + "…" : name));
    chart.appendChild(svg("rect", { x: labelWidth, y: y + 4, width: length, height: row - 10, rx: 3, class: "bar" }));
    chart.appendChild(svg("text", { x: labelWidth + length + 6, y: y + 17, class: "value" }, fmtSize(r.bytes) + " · " + r.count));
  });
  return chart;
}

function section(id, title) {
  return el("section", { class: "panel admin-" + id, id: "admin-" + id, "aria-labelledby": id + "-h" }, el("h3", { id: id + "-h" }, title));
}

async function holdsSection(ctx) {
  var box = section("holds", t("holds_title"));
  var holds = (await api.get("/api/admin/holds")).holds;
  if (!holds.length) {
    box.appendChild(el("p", { class: "empty" }, t("holds_none")));
  } else {
    box.appendChild(
      table(
        [t("col_scope"), t("col_target"), t("reason"), t("col_by"), t("col_created"), ""],
        holds.map(function (h) {
          var release = null;
          if (ctx.me.role === "admin") {
            release = el("button", { type: "button", class: "danger" }, t("hold_release"));
            release.addEventListener("click", async function () {
              var reason = window.prompt(t("hold_release_reason"));
              if (!reason) {
                return;
              }
              try {
                await api.post("/api/admin/holds/" + api.enc(h.id) + "/release", { reason: reason });
                toast(t("hold_released"));
                ctx.refresh();
              } catch (error) {
                toast(problem(error));
              }
            });
          }
          return [t("scope_" + h.scope), h.target, h.reason, h.actor, fmtTime(h.created_at), release];
        }),
        "grid holds"
      )
    );
  }
  if (ctx.me.role === "admin") {
    var scope = el("select", { id: "hold-scope" }, ["case", "evidence"].map(function (s) {
      return el("option", { value: s }, t("scope_" + s));
    }));
    var target = el("input", { id: "hold-target", required: true, spellcheck: "false" });
    var reason = el("input", { id: "hold-reason", required: true, maxlength: "2000" });
    var status = el("p", { class: "status", role: "alert" });
    var form = el("form", { class: "inline-form", novalidate: true },
      el("label", { for: "hold-scope" }, t("col_scope")), scope,
      el("label", { for: "hold-target" }, t("col_target")), target,
      el("label", { for: "hold-reason" }, t("reason")), reason,
      el("button", { type: "submit" }, t("hold_add")), status);
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      try {
        await api.post("/api/admin/holds", { scope: scope.value, target: target.value.trim(), reason: reason.value.trim() });
        toast(t("hold_added"));
        ctx.refresh();
      } catch (error) {
        status.textContent = problem(error);
      }
    });
    box.appendChild(form);
  }
  return box;
}

async function retentionSection() {
  var box = section("retention", t("retention_title"));
  var policy = await api.get("/api/admin/retention");
  box.appendChild(
    table(
      [t("col_class"), t("col_keep"), t("col_lock")],
      policy.classes.map(function (c) {
        return [c.name + (c.name === policy.default ? " (" + t("default") + ")" : ""), c.forever ? t("forever") : t("days_n", { n: c.days }), c.lock];
      }),
      "grid classes"
    )
  );
  box.appendChild(facts([
    [t("grace_days"), String(policy.grace_days)],
    [t("recovery_days"), String(policy.recovery_days)],
    [t("object_lock"), policy.storage.object_lock ? t("yes") : t("no")],
  ]));
  var plan = await api.get("/api/admin/purge");
  box.appendChild(el("h4", {}, t("purge_title")));
  var kinds = ["delete", "purge", "held", "waiting", "blocked"];
  box.appendChild(
    el("ul", { class: "plan" }, kinds.map(function (k) {
      var bytes = plan[k].reduce(function (sum, c) {
        return sum + (c.size || 0);
      }, 0);
      return el("li", { "data-kind": k }, el("strong", {}, t("plan_" + k)), " ", t("plan_count", { n: plan[k].length, size: fmtSize(bytes) }));
    }))
  );
  var acted = plan.delete.concat(plan.purge);
  if (acted.length) {
    box.appendChild(table([t("col_evidence"), t("col_case"), t("col_class"), t("col_size"), t("retain_until")], acted.slice(0, 50).map(function (c) {
      return [hash(c.evidence_id), c.case_id, c.class, fmtSize(c.size), fmtTime(c.retain_until)];
    }), "grid"));
  }
  box.appendChild(el("p", { class: "hint" }, t("purge_hint")));
  return box;
}

async function usageSection() {
  var box = section("usage", t("usage_title"));
  var usage = await api.get("/api/admin/usage");
  box.appendChild(facts([
    [t("originals"), t("plan_count", { n: usage.originals.count, size: fmtSize(usage.originals.bytes) })],
    [t("derivatives"), t("plan_count", { n: usage.derivatives.count, size: fmtSize(usage.derivatives.bytes) })],
  ]));
  [["by_case", "usage_by_case"], ["by_class", "usage_by_class"], ["by_agency", "usage_by_agency"]].forEach(function (pair) {
    var rows = usage[pair[0]] || [];
    box.appendChild(el("h4", {}, t(pair[1])));
    box.appendChild(rows.length ? el("figure", { class: "chart", "data-chart": pair[0] }, bars(rows, t(pair[1]))) : el("p", { class: "empty" }, t("usage_none")));
  });
  return box;
}

async function integritySection() {
  var box = section("integrity", t("integrity_title"));
  var found = await api.get("/api/admin/integrity");
  box.appendChild(facts([
    [t("integrity_ok"), String(found.counts.ok)],
    [t("integrity_failed"), String(found.counts.failed)],
    [t("integrity_unchecked"), String(found.counts.unchecked)],
    [t("last_checked"), fmtTime(found.last_checked_at) || t("never")],
    [t("last_round"), fmtTime(found.last_round_at) || t("never")],
    [t("next_round"), found.scrub_interval > 0 ? fmtTime(found.next_round_at) : t("scrub_off")],
  ]));
  if (found.failures.length) {
    box.appendChild(table([t("col_evidence"), t("col_case"), t("col_file"), t("last_checked")], found.failures.map(function (f) {
      return [hash(f.evidence_id), f.case_id, f.filename, fmtTime(f.checked_at)];
    }), "grid failures"));
  }
  return box;
}

var ALGORITHMS = { sha256: "SHA-256", sm3: "SM3", ed25519: "Ed25519", "sm2-sm3": "SM2 (SM3)" };

async function auditSection() {
  var box = section("audit", t("audit_title"));
  var state = await api.get("/api/admin/audit");
  var cp = state.checkpoint;
  box.appendChild(facts([
    [t("audit_entries"), String(state.entries)],
    [t("audit_head"), state.head_hash ? hash(state.head_hash) : ""],
    [t("audit_checkpoint"), cp ? t("checkpoint_is", { seq: cp.seq, time: fmtTime(cp.time), key: cp.key_id }) : t("never")],
    [t("audit_unsealed"), t("unsealed_is", { n: state.unsealed, seconds: state.checkpoint_interval })],
    // The suite shows in the algorithms: SHA-256 and Ed25519, or SM3 and SM2 under gm.
    [t("audit_algorithms"), t("algorithms_are", {
      chain: ALGORITHMS[state.hash_algorithm] || state.hash_algorithm,
      signature: cp ? ALGORITHMS[cp.algorithm] || cp.algorithm || "—" : "—",
    })],
  ]));
  box.appendChild(
    table([t("col_witness"), t("col_holds_latest")], state.witnesses.map(function (w) {
      var verdict = w.error ? t("witness_error", { error: w.error }) : w.holds_latest === null ? "—" : w.holds_latest ? t("yes") : t("no");
      return [w.name, el("span", { class: w.error || w.holds_latest === false ? "bad" : "ok" }, verdict)];
    }), "grid witnesses")
  );
  if (!state.witnesses.length) {
    box.appendChild(el("p", { class: "bad" }, t("witness_none")));
  }
  box.appendChild(el("p", { class: "hint" }, t("audit_hint")));
  return box;
}

export async function render(ctx) {
  var main = ctx.main;
  main.appendChild(el("h2", {}, t("admin_title")));
  var parts = [holdsSection(ctx), retentionSection(), usageSection(), integritySection(), auditSection()];
  var grid = el("div", { class: "admin-grid" });
  main.appendChild(grid);
  for (var i = 0; i < parts.length; i += 1) {
    try {
      grid.appendChild(await parts[i]);
    } catch (error) {
      if (error.status === 401) {
        throw error;
      }
      grid.appendChild(el("p", { class: "status", role: "alert" }, problem(error)));
    }
  }
}
