// client.mts: a client generated from docs/openapi.yaml submits a task and
// reads it back, for t/104-openapi.t.
//
// The types come from openapi-typescript (schema.d.ts, generated from the
// document next to this file); openapi-fetch makes the calls. tsc --strict
// compiles this file against those types, so a call the document does not
// describe, or a field it does not name, fails the build before it runs.
//
//   node client.mjs BASE_URL

import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Task = components["schemas"]["Task"];

declare const process: { argv: string[] };

const base = process.argv[2];

if (!base) {
    throw new Error("usage: node client.mjs BASE_URL");
}

const client = createClient<paths>({ baseUrl: base });
const user = { "X-User-Id": "carol" };

function check(ok: boolean, what: string): void {
    if (!ok) {
        throw new Error("client: " + what);
    }
}

const submitted = await client.POST("/image/async", {
    params: { header: user },
    body: { prompt: "a typed fox", width: 64, height: 64, seed: 7,
            priority: 6 },
});

check(submitted.response.status === 202, "the submission answered "
      + submitted.response.status);
check(submitted.data !== undefined, "no task in the 202");

const task: Task = submitted.data!;
const location = submitted.response.headers.get("Location");

check(task.status === "QUEUED", "submitted as " + task.status);
check(location === new URL(base).pathname + "/tasks/" + task.id,
      "Location " + location);

let read: Task | undefined;

for (let i = 0; i < 200; i++) {
    const r = await client.GET("/tasks/{id}", {
        params: { path: { id: task.id }, header: user },
    });
    check(r.data !== undefined, "reading the task answered "
          + r.response.status);
    read = r.data!;
    if (read.status === "DONE" || read.status === "FAILED") {
        break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
}

check(read !== undefined && read.status === "DONE",
      "the task ended " + read?.status);
check(read!.id === task.id && read!.kind === "image", "another task");
check(read!.priority === 6, "priority " + read!.priority);

const params = read!.params;
check("seed" in params && params.seed === 7, "the seed is not recorded");

const result = read!.result;
check(result !== null && "content_type" in result
      && result.content_type === "image/png",
      "no image result");

const png = await client.GET("/tasks/{id}/result", {
    params: { path: { id: task.id }, header: user },
    parseAs: "arrayBuffer",
});
const bytes = new Uint8Array(png.data as ArrayBuffer);

check(png.response.headers.get("Content-Type") === "image/png", "not a PNG");
check(bytes.length === (result as { bytes: number }).bytes, "size differs");
check(bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47,
      "no PNG signature");

const listed = await client.GET("/tasks", {
    params: { query: { kind: "image", limit: 5 }, header: user },
});
const page = listed.data;
check(page !== undefined && "tasks" in page
      && page.tasks.some((t) => t.id === task.id), "not in the listing");

const refused = await client.POST("/image/async", {
    params: { header: user },
    body: { prompt: "too narrow", width: 56 },
});
check(refused.response.status === 400
      && refused.error?.error.code === "invalid_argument"
      && refused.error?.error.field === "width", "width 56 was not refused");

const stats = await client.GET("/system/stats");
check(stats.data !== undefined && stats.data.tasks.DONE >= 1, "stats");

console.log(JSON.stringify({ id: task.id, status: read!.status,
                             location, bytes: bytes.length }));
