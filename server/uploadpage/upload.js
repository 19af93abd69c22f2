/* The upload page: tus-js-client sends each file to the server's tus endpoint, resumably; then
 * the page asks GET /api/uploads/<id> for the evidence id and the digests the server computed.
 *
 * The token lives in sessionStorage (this tab only) and travels only as an Authorization header.
 * tus-js-client remembers unfinished uploads (URL by file fingerprint) in localStorage, so the
 * same file chosen again after a dropped network or a closed tab continues where it stopped.
 */
(function () {
  "use strict";

  var main = document.querySelector("main[data-endpoint]");
  if (!main) {
    return;
  }
  var words = JSON.parse(document.getElementById("words").textContent);
  var TOKEN_KEY = "avidence.upload.token";
  var VERIFY_POLLS = 120; // one a second: a bounded wait for the server's digest check
  var form = document.getElementById("upload-form");
  var tokenInput = document.getElementById("token");
  var caseInput = document.getElementById("case");
  var itemInput = document.getElementById("item");
  var fileInput = document.getElementById("files");
  var drop = document.getElementById("drop");
  var status = document.getElementById("status");
  var list = document.getElementById("uploads");
  var pending = []; // {file, row, upload, running}

  function say(text) {
    status.textContent = text || "";
  }

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  function size(bytes) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var value = bytes;
    var i = 0;
    while (value >= 1024 && i < units.length - 1) {
      value /= 1024;
      i += 1;
    }
    return (i === 0 ? String(value) : value.toFixed(1)) + " " + units[i];
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  // -- the token: typed once per tab ------------------------------------------------------------
  try {
    tokenInput.value = window.sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    /* storage disabled: the token is simply typed again */
  }
  document.getElementById("forget").addEventListener("click", function () {
    tokenInput.value = "";
    try {
      window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* nothing stored */
    }
  });

  // -- choosing files: the picker or drag and drop ----------------------------------------------
  function addFiles(files) {
    for (var i = 0; i < files.length; i += 1) {
      var file = files[i];
      var row = element("li", "file");
      row.appendChild(element("span", "name", file.name));
      row.appendChild(element("span", "size", size(file.size)));
      var bar = element("progress");
      bar.max = 100;
      bar.value = 0;
      row.appendChild(bar);
      row.appendChild(element("p", "state", words.waiting));
      list.appendChild(row);
      pending.push({ file: file, row: row, upload: null, running: false, done: false });
    }
    say("");
  }

  fileInput.addEventListener("change", function () {
    addFiles(fileInput.files);
    fileInput.value = "";
  });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) {
      event.preventDefault();
      drop.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function () {
      drop.classList.remove("over");
    });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files) {
      addFiles(event.dataTransfer.files);
    }
  });
  drop.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });

  // -- after the last byte: what the server computed ----------------------------------------------
  function serverMessage(response) {
    if (!response) {
      return "";
    }
    try {
      var body = JSON.parse(response.getBody ? response.getBody() : response);
      return body && body.error && body.error.message ? body.error.message : "";
    } catch (e) {
      return "";
    }
  }

  function explain(error) {
    var response = error && error.originalResponse;
    var code = response ? response.getStatus() : 0;
    if (code === 401) {
      return words.bad_token;
    }
    if (code === 403) {
      return words.forbidden;
    }
    if (code === 413) {
      return words.too_large;
    }
    if (code >= 400 && code < 500) {
      return fill(words.rejected, { message: serverMessage(response) || String(code) });
    }
    return words.network;
  }

  function showFacts(entry, facts) {
    var dl = element("dl", "facts");
    facts.forEach(function (pair) {
      dl.appendChild(element("dt", "", pair[0]));
      var dd = element("dd", pair[2] || "", pair[1]);
      dl.appendChild(dd);
    });
    entry.row.appendChild(dl);
    return dl;
  }

  /* A UTC time from the API in the server's display zone (else the browser's), zone named. */
  function showTime(cell, iso) {
    var clock = window.avidenceTime;
    var zone = main.dataset.zone || (clock ? clock.browserZone() : "");
    if (!clock || !zone || !iso) {
      cell.textContent = iso || "-";
      return;
    }
    var time = element("time", "", clock.show(iso, zone, main.dataset.zoneName || zone));
    time.setAttribute("datetime", iso);
    time.dataset.zone = zone;
    cell.appendChild(time);
    clock.addOwnClock(words.your_clock);
  }

  function receiptButton(entry, evidenceId, token) {
    var button = element("button", "receipt", words.receipt);
    button.type = "button";
    button.addEventListener("click", function () {
      fetch("/api/evidence/" + encodeURIComponent(evidenceId) + "/receipt", {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        credentials: "omit"
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error(String(response.status));
          }
          return response.blob();
        })
        .then(function (blob) {
          var link = element("a");
          link.href = URL.createObjectURL(blob);
          link.download = "receipt-" + evidenceId + ".json";
          document.body.appendChild(link);
          link.click();
          link.remove();
        })
        .catch(function () {
          say(words.network);
        });
    });
    entry.row.appendChild(button);
  }

  function finish(entry, token, uploadId, polls) {
    fetch(main.dataset.api + encodeURIComponent(uploadId), {
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store"
    })
      .then(function (response) {
        return response.json().then(function (body) {
          return { status: response.status, body: body };
        });
      })
      .then(function (result) {
        var state = entry.row.querySelector(".state");
        var body = result.body || {};
        if (result.status !== 200) {
          state.textContent = fill(words.failed, {
            message: (body.error && body.error.message) || String(result.status)
          });
          entry.row.classList.add("failed");
          return;
        }
        if (body.state === "done" && body.evidence_id) {
          var digests = body.digests || {};
          state.textContent = words.done;
          entry.row.classList.add("done");
          var facts = showFacts(entry, [
            [words.evidence, body.evidence_id, "evidence-id"],
            [words.received, "", "received"],
            ["BLAKE3", digests.blake3 || "-", "hash blake3"],
            ["SHA-256", digests.sha256 || "-", "hash sha256"]
          ]);
          showTime(facts.querySelector(".received"), body.updated_at);
          receiptButton(entry, body.evidence_id, token);
          return;
        }
        if (body.state === "quarantined") {
          state.textContent = words.quarantined;
          entry.row.classList.add("failed");
          return;
        }
        if (body.state !== "receiving" && body.state !== "verifying") {
          state.textContent = fill(words.failed, { message: body.error || body.state });
          entry.row.classList.add("failed");
          return;
        }
        if (polls <= 0) {
          state.textContent = words.slow;
          showFacts(entry, [[words.upload_id, uploadId, "upload-id"]]);
          return;
        }
        window.setTimeout(function () {
          finish(entry, token, uploadId, polls - 1);
        }, 1000);
      })
      .catch(function () {
        if (polls > 0) {
          window.setTimeout(function () {
            finish(entry, token, uploadId, polls - 1);
          }, 1000);
        } else {
          entry.row.querySelector(".state").textContent = words.network;
        }
      });
  }

  function metadata(file, fields) {
    var out = {
      case: fields.caseNumber,
      filename: file.name,
      filetype: file.type || "application/octet-stream"
    };
    if (fields.item) {
      out.item = fields.item; // an empty item is left out, not sent as an empty value
    }
    return out;
  }

  // -- sending ------------------------------------------------------------------------------------
  function send(entry, token, fields) {
    var state = entry.row.querySelector(".state");
    var bar = entry.row.querySelector("progress");
    var started = Date.now();
    var firstByte = null;
    entry.running = true;
    entry.row.classList.remove("failed");
    var upload = new window.tus.Upload(entry.file, {
      endpoint: main.dataset.endpoint,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      headers: { Authorization: "Bearer " + token },
      metadata: metadata(entry.file, fields),
      removeFingerprintOnSuccess: true,
      onProgress: function (sent, total) {
        if (firstByte === null) {
          firstByte = { at: Date.now(), bytes: sent };
        }
        var seconds = Math.max((Date.now() - firstByte.at) / 1000, 0.001);
        bar.value = total ? Math.floor((sent / total) * 100) : 0;
        state.textContent =
          words.uploading +
          " · " +
          fill(words.progress, {
            sent: size(sent),
            total: size(total),
            rate: size(Math.round((sent - firstByte.bytes) / seconds))
          });
      },
      onError: function (error) {
        entry.running = false;
        entry.row.classList.add("failed");
        state.textContent = explain(error);
        say(state.textContent);
      },
      onSuccess: function () {
        entry.running = false;
        entry.done = true;
        bar.value = 100;
        state.textContent = words.verifying;
        var uploadId = upload.url.replace(/\/+$/, "").split("/").pop();
        entry.row.dataset.seconds = String((Date.now() - started) / 1000);
        finish(entry, token, uploadId, VERIFY_POLLS);
      }
    });
    entry.upload = upload;
    upload
      .findPreviousUploads()
      .then(function (previous) {
        if (previous.length > 0) {
          upload.resumeFromPreviousUpload(previous[0]);
          state.textContent = words.resuming;
        }
        upload.start();
      })
      .catch(function () {
        upload.start();
      });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!window.tus || !window.tus.isSupported) {
      say(words.no_tus);
      return;
    }
    var token = tokenInput.value.trim();
    var fields = { caseNumber: caseInput.value.trim(), item: itemInput.value.trim() };
    if (!token) {
      say(words.need_token);
      tokenInput.focus();
      return;
    }
    if (!fields.caseNumber) {
      say(words.need_case);
      caseInput.focus();
      return;
    }
    var ready = pending.filter(function (entry) {
      return !entry.done && !entry.running;
    });
    if (ready.length === 0) {
      say(words.need_files);
      return;
    }
    try {
      window.sessionStorage.setItem(TOKEN_KEY, token);
    } catch (e) {
      /* storage disabled: the token is used for this page only */
    }
    say("");
    ready.forEach(function (entry) {
      send(entry, token, fields);
    });
  });
})();
