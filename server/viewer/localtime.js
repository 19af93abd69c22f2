/* Times in the browser, written as the server writes them (server/localtime.py):
 * "2026年12月6日 11:17:07（北京时间，UTC+8）" on Chinese pages, "2026-12-06 11:17:07 (Asia/Shanghai,
 * UTC+8)" on English ones. Used for times a script learns (the upload page's "received") and to
 * add the reader's own clock beside the server's times where the two zones differ.
 */
(function () {
  "use strict";

  function zh() {
    return (document.documentElement.lang || "").indexOf("zh") === 0;
  }

  function offset(date, zone) {
    var parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" })
      .formatToParts(date)
      .filter(function (p) {
        return p.type === "timeZoneName";
      });
    var text = parts.length ? parts[0].value.replace("GMT", "") : "";
    var match = /^([+-])(\d\d):(\d\d)$/.exec(text);
    if (!match) {
      return "UTC+0";
    }
    var hours = String(Number(match[2]));
    return "UTC" + match[1] + hours + (match[3] === "00" ? "" : ":" + match[3]);
  }

  /* `iso` (UTC) in `zone` (an IANA name), the zone named by `name` (defaults to `zone`). */
  function show(iso, zone, name) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) {
      return "";
    }
    var fields = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit"
    })
      .formatToParts(date)
      .forEach(function (p) {
        fields[p.type] = p.value;
      });
    var clock = fields.hour + ":" + fields.minute + ":" + fields.second;
    var utc = offset(date, zone);
    name = name === undefined ? zone : name;
    var label = name && name !== utc ? name + (zh() ? "，" : ", ") + utc : utc;
    if (zh()) {
      return (
        fields.year + "年" + Number(fields.month) + "月" + Number(fields.day) + "日 " +
        clock + "（" + label + "）"
      );
    }
    return fields.year + "-" + fields.month + "-" + fields.day + " " + clock + " (" + label + ")";
  }

  function browserZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      return "";
    }
  }

  /* Beside each server-written <time data-zone>, the reader's own clock when its zone differs. */
  function addOwnClock(words) {
    var own = browserZone();
    Array.prototype.forEach.call(document.querySelectorAll("time[data-zone]"), function (el) {
      var shown = el.dataset.zone;
      if (!own || !shown || own === shown || el.parentNode.querySelector(".own-clock")) {
        return;
      }
      var span = document.createElement("span");
      span.className = "own-clock";
      span.textContent = " · " + words.replace("{time}", show(el.getAttribute("datetime"), own));
      el.parentNode.insertBefore(span, el.nextSibling);
    });
  }

  window.avidenceTime = { show: show, browserZone: browserZone, addOwnClock: addOwnClock };
})();
