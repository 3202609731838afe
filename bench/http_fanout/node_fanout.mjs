// node_fanout.mjs -- the Node.js side of the HTTP fan-out benchmark:
// `concurrency` async workers pull request numbers from one shared
// counter and GET `url` with the global fetch (undici) until `n`
// requests have been made.
//
//   node bench/http_fanout/node_fanout.mjs URL N CONCURRENCY
//
// Prints one JSON object with counts by status and the elapsed time.
const [url, nArg, concArg] = process.argv.slice(2);
const n = Number(nArg ?? 20000);
const concurrency = Number(concArg ?? 64);

let issued = 0, ok = 0, other = 0, bodyBytes = 0;

async function worker() {
  while (issued < n) {
    issued++;
    const res = await fetch(url);
    // Read the body so the connection goes back to the pool, as the
    // other sides do.
    const body = await res.arrayBuffer();
    bodyBytes += body.byteLength;
    if (res.status === 200) ok++; else other++;
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, worker));
const seconds = (performance.now() - t0) / 1000;

console.log(JSON.stringify({
  side: `node ${process.version} fetch`,
  requests: issued,
  status_200: ok,
  status_other: other,
  body_bytes: bodyBytes,
  seconds,
  requests_per_sec: issued / seconds,
}));
