// The Restate side of bench/peers: service Bench, whose handlers do one or
// three durable steps (ctx.run), each the trivial step of ours (a string
// made from the input: "step I of N"). bench/peers/run copies this file
// next to the SDK it installed and starts it with Node >= 22.
//   node service.mjs PORT
import * as restate from "@restatedev/restate-sdk";

const step = (i, n) => `step ${i} of ${n}`;

const bench = restate.service({
  name: "Bench",
  handlers: {
    one: async (ctx, req) => ctx.run("s0", () => step(0, req.n)),
    three: async (ctx, req) => {
      const out = [];
      for (let i = 0; i < 3; i++) out.push(await ctx.run(`s${i}`, () => step(i, req.n)));
      return out;
    },
  },
});

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node service.mjs PORT");
  process.exit(2);
}
restate.endpoint().bind(bench).listen(port);
