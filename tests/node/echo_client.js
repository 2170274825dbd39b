// Node `ws` client (permessage-deflate on, as ws offers by default):
// sends text and binary messages, checks each echo, prints one JSON line.
const WebSocket = require("ws");
const url = process.argv[2];
const n = parseInt(process.argv[3] || "40", 10);
const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
let i = 0, ok = 0;
const text = k => `node message ${k} ✓ `.repeat(80);
const bin = k => Buffer.from(Array.from({ length: 4000 }, (_, j) => (j * k) % 251));
const next = () => ws.send(i % 2 ? bin(i) : text(i));
ws.on("open", next);
ws.on("message", (data, isBinary) => {
  const good = i % 2 ? isBinary && Buffer.compare(data, bin(i)) === 0 : !isBinary && data.toString() === text(i);
  if (good) ok++;
  if (++i < n) next();
  else ws.close(1000, "done");
});
ws.on("close", code => {
  console.log(JSON.stringify({ ok, n, code, extensions: ws.extensions }));
  process.exit(ok === n ? 0 : 1);
});
ws.on("error", e => { console.log(JSON.stringify({ error: String(e) })); process.exit(2); });
