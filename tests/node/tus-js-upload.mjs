// One upload with tus-js-client in Node, for the interop tests (tests/test_link_cuts.py).
//
// Usage: node tus-js-upload.mjs '<json>' where the JSON gives endpoint, token, path, metadata
// and optionally chunkSize, parallelUploads, deferred (send the length only at the end, from
// a stream of unknown size) and retryDelays. Prints one JSON line: {"url": ...} on success,
// {"error": ...} with exit code 1 otherwise, plus {"retry": ...} lines for every retry seen.
import fs from "node:fs";
import { Readable } from "node:stream";
import * as tus from "tus-js-client";

const args = JSON.parse(process.argv[2]);
const options = {
  endpoint: args.endpoint,
  headers: { Authorization: `Bearer ${args.token}` },
  metadata: args.metadata,
  retryDelays: args.retryDelays ?? [0, 1000, 3000, 5000],
  removeFingerprintOnSuccess: true,
  onShouldRetry(err, attempt) {
    const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    console.log(JSON.stringify({ retry: attempt, status, error: String(err.message).slice(0, 200) }));
    return true;
  },
};
if (args.chunkSize) options.chunkSize = args.chunkSize;
if (args.parallelUploads) options.parallelUploads = args.parallelUploads;

let input;
if (args.deferred) {
  // A stream whose size tus-js-client cannot know: it sends Upload-Defer-Length and declares
  // the length with the last PATCH.
  options.uploadLengthDeferred = true;
  input = Readable.from(fs.createReadStream(args.path));
} else {
  input = fs.readFileSync(args.path);
}

const upload = new tus.Upload(input, {
  ...options,
  onError(err) {
    console.log(JSON.stringify({ error: String(err.message).slice(0, 500) }));
    process.exit(1);
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url }));
    process.exit(0);
  },
});
upload.start();
