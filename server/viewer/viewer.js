/* The ticket viewer: start a counted view, then let the browser's own player stream and seek.
 *
 * A media element gets its source only after POST /t/<token>/views has counted the view and
 * returned a grant; every range request then carries that grant. No framework, no inline code:
 * the page's Content-Security-Policy allows scripts from this origin only.
 */
(function () {
  "use strict";

  var main = document.querySelector("main[data-views]");
  if (!main) {
    return;
  }
  var msg = main.dataset;
  var players = Array.prototype.slice.call(document.querySelectorAll(".player[data-evidence]"));

  function clock(seconds) {
    if (!isFinite(seconds) || seconds < 0) {
      return "";
    }
    var total = Math.round(seconds);
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    function two(n) {
      return (n < 10 ? "0" : "") + n;
    }
    return (h > 0 ? h + ":" + two(m) : String(m)) + ":" + two(s);
  }

  function say(box, text) {
    var status = box.parentNode.querySelector(".status");
    if (status) {
      status.textContent = text;
    }
  }

  function startView(box) {
    var media = box.querySelector("video, audio");
    var button = box.querySelector("button.start");
    button.disabled = true;
    say(box, "");
    fetch(main.dataset.views, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ evidence: box.dataset.evidence })
    })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return {};
          })
          .then(function (body) {
            return { status: response.status, body: body };
          });
      })
      .then(function (result) {
        if (result.status !== 201) {
          var code = result.body && result.body.error ? result.body.error.code : "";
          if (code === "ticket_exhausted") {
            say(box, msg.msgExhausted);
          } else if (code === "integrity_withheld") {
            say(box, msg.msgWithheld); // a scrub flagged it since the page was drawn
          } else if (result.status === 401 || result.status === 404 || result.status === 410) {
            window.location.reload(); // the page explains what happened to the link
          } else {
            say(box, msg.msgNetwork);
            button.disabled = false;
          }
          return;
        }
        var left = document.getElementById("views-left");
        if (left && result.body.views_left !== null && result.body.views_left !== undefined) {
          left.textContent = String(result.body.views_left);
        }
        media.src = box.dataset.media + "?view=" + encodeURIComponent(result.body.view);
        media.controls = true;
        box.classList.add("started");
        var playing = media.play();
        if (playing && playing.catch) {
          playing.catch(function () {
            /* Autoplay refused (no user activation left): the controls are there to press. */
          });
        }
      })
      .catch(function () {
        say(box, msg.msgNetwork);
        button.disabled = false;
      });
  }

  /* A media element does not say why a request failed: ask once with a one-byte range. A view
   * whose time or data allowance ran out answers 410 with a code; then a new view may start. */
  function explain(box, media, button, src) {
    fetch(src, {
      credentials: "same-origin",
      headers: { Range: "bytes=0-0", Accept: "application/json" },
      cache: "no-store"
    })
      .then(function (response) {
        if (response.ok) {
          return "";
        }
        return response
          .json()
          .then(function (body) {
            return body && body.error ? body.error.code : "";
          })
          .catch(function () {
            return "";
          });
      })
      .then(function (code) {
        var words = {
          view_spent: msg.msgSpent,
          view_expired: msg.msgViewExpired,
          integrity_withheld: msg.msgWithheld,
          ticket_exhausted: msg.msgExhausted,
          ticket_revoked: msg.msgRevoked,
          ticket_expired: msg.msgExpired,
          gone: msg.msgDeleted
        }[code];
        if (code === "view_spent" || code === "view_expired") {
          media.removeAttribute("src");
          media.load();
          media.controls = false;
          box.classList.remove("started");
          button.disabled = false;
        }
        if (code === "ticket_revoked" || code === "ticket_expired" || code === "gone") {
          box.classList.add("ended"); // the link or the recording is gone: say so, not "format"
        }
        say(box, words || (code ? msg.msgNetwork : msg.msgUnplayable));
      })
      .catch(function () {
        say(box, msg.msgNetwork);
      });
  }

  if (window.avidenceTime) {
    window.avidenceTime.addOwnClock(msg.msgOwnClock);
  }

  players.forEach(function (box) {
    var media = box.querySelector("video, audio");
    var button = box.querySelector("button.start");
    if (!media || !button) {
      return;
    }
    button.addEventListener("click", function () {
      startView(box);
    });
    media.addEventListener("loadedmetadata", function () {
      var cell = document.getElementById("duration-" + box.dataset.evidence);
      if (cell && cell.dataset.known !== "1") {
        cell.textContent = clock(media.duration);
      }
    });
    media.addEventListener("error", function () {
      var src = media.getAttribute("src");
      if (src) {
        explain(box, media, button, src);
      }
    });
    media.addEventListener("play", function () {
      players.forEach(function (other) {
        var m = other.querySelector("video, audio");
        if (m && m !== media && !m.paused) {
          m.pause();
        }
      });
    });
  });
})();
