"""fake_comfyui.py: the ComfyUI side of tools/fake_gpu.py (--kind comfyui).

It speaks ComfyUI's HTTP API as shared/research/backend-protocols.md
describes it (comfyanonymous/ComfyUI server.py and execution.py); every
route also answers under /api/:

  POST /prompt {"prompt": <API-format graph>, "client_id": ...}
       -> 200 {"prompt_id", "number", "node_errors": {}}, or 400
          {"error": {"type", "message", "details", "extra_info"},
           "node_errors": {<id>: {"errors": [...], "dependent_outputs",
                                  "class_type"}}}
  GET  /prompt            -> {"exec_info": {"queue_remaining": N}}
  GET  /history/{id}      -> {} until the prompt has run, then
       {<id>: {"prompt": [...], "outputs": {<node>: {"images": [{"filename",
       "subfolder", "type"}]}}, "status": {"status_str": "success"|"error",
       "completed", "messages"}, "meta": {}}}
  GET  /view?filename=&subfolder=&type=  -> the image bytes
  GET  /queue             -> {"queue_running": [...], "queue_pending": [...]}
  POST /queue {"delete": [ids]} | {"clear": true}
  POST /interrupt [{"prompt_id": id}]: stops the running prompt (with an
       id, only when that one runs)
  GET  /system_stats      -> {"system": {...}, "devices": [...]} (503 while
       health is set "down")

Prompts run one at a time, in order, each for the fake's latency.  The
image is the fake's deterministic PNG for (the text of the CLIPTextEncode
wired to the KSampler's "positive", the KSampler's seed), written by the
SaveImage node as "<filename_prefix>_<counter:05>_.png".

POST /control/comfyui (GET reads them) sets what is ComfyUI's own:
  {"fault_on": "prompt" | "history" | "view",  which request the fake's
                                 fault mode (POST /control) applies to
   "execution_error": TEXT | null, the next prompt fails with it
   "filename": TEXT | null, "subfolder": TEXT | null,  the output's name
   "busy": S}                    a prompt of another client runs S seconds
                                 ahead of those queued after it
"""

import asyncio
import json
import re
import uuid
from urllib.parse import parse_qs

JSON = "application/json"
OUTPUT_NODES = ("SaveImage", "PreviewImage")
# fault modes that answer in place of ComfyUI: a prompt they hit is not queued
REPLACING = ("error400", "error500", "malformed", "hang", "reset",
             "huge_body", "endless_chunked", "huge_headers")
LINK = "link"

# class_type -> {input: kind}: "INT", "FLOAT", "STRING", or LINK
NODES = {
    "UnetLoaderGGUF": {"unet_name": "STRING"},
    "UNETLoader": {"unet_name": "STRING", "weight_dtype": "STRING"},
    "CLIPLoader": {"clip_name": "STRING", "type": "STRING"},
    "CLIPLoaderGGUF": {"clip_name": "STRING", "type": "STRING"},
    "VAELoader": {"vae_name": "STRING"},
    "ModelSamplingAuraFlow": {"model": LINK, "shift": "FLOAT"},
    "CLIPTextEncode": {"text": "STRING", "clip": LINK},
    "EmptySD3LatentImage": {"width": "INT", "height": "INT",
                            "batch_size": "INT"},
    "EmptyLatentImage": {"width": "INT", "height": "INT", "batch_size": "INT"},
    "KSampler": {"model": LINK, "seed": "INT", "steps": "INT", "cfg": "FLOAT",
                 "sampler_name": "STRING", "scheduler": "STRING",
                 "positive": LINK, "negative": LINK, "latent_image": LINK,
                 "denoise": "FLOAT"},
    "VAEDecode": {"samples": LINK, "vae": LINK},
    "SaveImage": {"images": LINK, "filename_prefix": "STRING"},
    "PreviewImage": {"images": LINK},
}

LIMITS = {("KSampler", "seed"): (0, 0xffffffffffffffff),
          ("KSampler", "steps"): (1, 10000), ("KSampler", "cfg"): (0.0, 100.0),
          ("KSampler", "denoise"): (0.0, 1.0)}
for _node in ("EmptySD3LatentImage", "EmptyLatentImage"):
    LIMITS[(_node, "width")] = LIMITS[(_node, "height")] = (16, 16384)
    LIMITS[(_node, "batch_size")] = (1, 4096)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def comfy_error(kind, message, details="", node_errors=None):
    body = {"error": {"type": kind, "message": message, "details": details,
                      "extra_info": {}},
            "node_errors": node_errors or {}}
    return 400, json.dumps(body).encode(), JSON


def input_error(kind, message, details, name, value):
    return {"type": kind, "message": message, "details": details,
            "extra_info": {"input_name": name, "received_value": value}}


def check_inputs(graph, node_id, node):
    """The errors of one node's inputs, as ComfyUI's validate_inputs."""
    errors = []
    spec = NODES[node["class_type"]]
    for name, kind in spec.items():
        if name not in node["inputs"]:
            errors.append(input_error("required_input_missing",
                                      "Required input is missing", name,
                                      name, None))
            continue
        value = node["inputs"][name]
        if kind == LINK:
            if not (isinstance(value, list) and len(value) == 2
                    and str(value[0]) in graph and is_int(value[1])):
                errors.append(input_error("bad_linked_input",
                                          "Bad linked input, must be a "
                                          "length-2 list of [string, int]",
                                          f"{name}, {value}", name, value))
            continue
        ok = (is_int(value) if kind == "INT"
              else isinstance(value, (int, float)) and not isinstance(value, bool)
              if kind == "FLOAT" else isinstance(value, str))
        if not ok:
            errors.append(input_error("invalid_input_type",
                                      "Failed to convert an input value "
                                      f"to a {kind} value",
                                      f"{name}, {value!r}", name, value))
            continue
        low, high = LIMITS.get((node["class_type"], name), (None, None))
        if low is not None and value < low:
            errors.append(input_error("value_smaller_than_min",
                                      f"Value {value} smaller than min of {low}",
                                      f"{name}", name, value))
        elif high is not None and value > high:
            errors.append(input_error("value_bigger_than_max",
                                      f"Value {value} bigger than max of {high}",
                                      f"{name}", name, value))
    return errors


def validate(graph):
    """None when the graph may run, else the 400 answer."""
    if not isinstance(graph, dict) or not graph:
        return comfy_error("invalid_prompt", "Cannot execute because the "
                           "prompt is not an API-format graph")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return comfy_error("invalid_prompt", "Cannot execute because a "
                               "node is missing the class_type property.",
                               f"Node ID '#{node_id}'")
        if node["class_type"] not in NODES:
            return comfy_error("invalid_prompt", "Cannot execute because "
                               f"node {node['class_type']} does not exist.",
                               f"Node ID '#{node_id}'")
        if not isinstance(node.get("inputs"), dict):
            return comfy_error("invalid_prompt", "Cannot execute because a "
                               "node has no inputs.", f"Node ID '#{node_id}'")
    outputs = [i for i, n in graph.items() if n["class_type"] in OUTPUT_NODES]
    if not outputs:
        return comfy_error("prompt_no_outputs", "Prompt has no outputs")
    node_errors = {}
    for node_id, node in graph.items():
        errors = check_inputs(graph, node_id, node)
        if errors:
            node_errors[node_id] = {"errors": errors,
                                    "dependent_outputs": outputs,
                                    "class_type": node["class_type"]}
    if node_errors:
        return comfy_error("prompt_outputs_failed_validation",
                           "Prompt outputs failed validation", "", node_errors)
    return None


def linked(graph, node, name):
    link = node["inputs"].get(name)
    return graph.get(str(link[0])) if isinstance(link, list) else None


def job_params(graph):
    """What the graph asks for, read where a KSampler takes it from."""
    sampler = next((n for n in graph.values() if n["class_type"] == "KSampler"),
                   None)
    if sampler is None:
        return {}
    inputs = sampler["inputs"]
    positive = linked(graph, sampler, "positive") or {"inputs": {}}
    negative = linked(graph, sampler, "negative") or {"inputs": {}}
    latent = linked(graph, sampler, "latent_image") or {"inputs": {}}
    return {"prompt": positive["inputs"].get("text"),
            "negative_prompt": negative["inputs"].get("text"),
            "seed": inputs.get("seed"), "steps": inputs.get("steps"),
            "cfg_scale": inputs.get("cfg"),
            "width": latent["inputs"].get("width"),
            "height": latent["inputs"].get("height")}


class Item:
    """A prompt in the queue, running, or done."""

    def __init__(self, number, prompt_id, graph, client_id, latency):
        self.number = number
        self.prompt_id = prompt_id
        self.graph = graph
        self.client_id = client_id
        self.latency = latency
        self.interrupted = asyncio.Event()
        self.outputs = [i for i, n in graph.items()
                        if n.get("class_type") in OUTPUT_NODES]

    def as_list(self):
        return [self.number, self.prompt_id, self.graph,
                {"client_id": self.client_id}, self.outputs]


class FakeComfyUI:
    def __init__(self, app, expected_png):
        self.app = app
        self.expected_png = expected_png
        self.pending = []
        self.running = None
        self.history = {}
        self.images = {}
        self.number = 0
        self.counter = 0
        self.wake = None
        self.executor = None
        self.conf = {"fault_on": "prompt", "execution_error": None,
                     "filename": None, "subfolder": None}

    # ---- routing: (method, handler, is_job) or None

    def route(self, path):
        if path.startswith("/api/"):
            path = path[4:]
        if path == "/prompt":
            return (None, self.prompt, True)
        if path.startswith("/history/"):
            return ("GET", self.get_history, True)
        if path == "/view":
            return ("GET", self.view, True)
        if path == "/queue":
            return (None, self.queue, True)
        if path == "/interrupt":
            return ("POST", self.interrupt, True)
        if path == "/system_stats":
            return ("GET", self.system_stats, False)
        if path == "/control/comfyui":
            return (None, self.control, False)
        return None

    def fault_applies(self, req):
        """Whether the fake's fault mode hits this request."""
        path = req.path[4:] if req.path.startswith("/api/") else req.path
        which = self.conf["fault_on"]
        return ((which == "prompt" and path == "/prompt" and req.method == "POST")
                or (which == "history" and path.startswith("/history/"))
                or (which == "view" and path == "/view"))

    def start(self):
        if self.executor is None:
            self.wake = asyncio.Event()
            self.executor = asyncio.get_running_loop().create_task(self.execute())

    # ---- the queue

    def enqueue(self, graph, client_id, latency):
        self.start()
        self.number += 1
        item = Item(self.number, str(uuid.uuid4()), graph, client_id, latency)
        self.pending.append(item)
        self.wake.set()
        return item

    async def execute(self):
        while True:
            while not self.pending:
                self.wake.clear()
                await self.wake.wait()
            item = self.pending.pop(0)
            self.running = item
            try:
                await asyncio.wait_for(item.interrupted.wait(), item.latency)
            except asyncio.TimeoutError:
                pass
            self.running = None
            self.finish(item)

    def finish(self, item):
        start = ["execution_start", {"prompt_id": item.prompt_id}]
        error = self.conf["execution_error"]
        outputs = {}
        if item.interrupted.is_set():
            messages = [start, ["execution_interrupted",
                                {"prompt_id": item.prompt_id, "node_id": "3",
                                 "node_type": "KSampler", "executed": []}]]
        elif error is not None and item.client_id != "someone-else":
            self.conf["execution_error"] = None
            messages = [start, ["execution_error",
                                {"prompt_id": item.prompt_id, "node_id": "3",
                                 "node_type": "KSampler", "executed": [],
                                 "exception_message": error,
                                 "exception_type": "RuntimeError",
                                 "traceback": [], "current_inputs": {},
                                 "current_outputs": {}}]]
        else:
            messages = [start, ["execution_success",
                                {"prompt_id": item.prompt_id}]]
            params = job_params(item.graph)
            png = self.expected_png((params.get("prompt") or "").strip(),
                                    params.get("seed") or 0)
            for node_id in item.outputs:
                node = item.graph[node_id]
                self.counter += 1
                # "sub/dir/name" writes "name_00001_.png" into sub/dir
                prefix = node["inputs"].get("filename_prefix", "ComfyUI")
                sub, _, prefix = prefix.rpartition("/")
                name = (self.conf["filename"]
                        or f"{prefix}_{self.counter:05}_.png")
                if self.conf["subfolder"] is not None:
                    sub = self.conf["subfolder"]
                kind = ("output" if node["class_type"] == "SaveImage"
                        else "temp")
                self.images[(name, sub, kind)] = png
                outputs[node_id] = {"images": [{"filename": name,
                                                "subfolder": sub,
                                                "type": kind}]}
        ok = messages[-1][0] == "execution_success"
        self.history[item.prompt_id] = {
            "prompt": item.as_list(), "outputs": outputs,
            "status": {"status_str": "success" if ok else "error",
                       "completed": ok, "messages": messages},
            "meta": {}}

    # ---- the routes; job ones are (response, summary)

    def prompt(self, req, record):
        if req.method == "GET":
            remaining = len(self.pending) + (self.running is not None)
            return (200, json.dumps({"exec_info": {
                "queue_remaining": remaining}}).encode(), JSON), "exec_info"
        if req.method != "POST":
            return (405, b"", "text/plain"), "method"
        try:
            body = json.loads(req.body)
        except ValueError:
            return comfy_error("invalid_prompt", "invalid JSON"), "bad json"
        record["json"] = body
        graph = body.get("prompt") if isinstance(body, dict) else None
        refused = validate(graph)
        if refused is not None:
            return refused, "refused"
        record["params"] = job_params(graph)
        if self.app.settings.mode in REPLACING and self.fault_applies(req):
            return (200, b"{}", JSON), "not queued: a fault answers"
        item = self.enqueue(graph, body.get("client_id"),
                            self.app.settings.latency)
        record["prompt_id"] = item.prompt_id
        answer = {"prompt_id": item.prompt_id, "number": item.number,
                  "node_errors": {}}
        return (200, json.dumps(answer).encode(), JSON), \
            f"prompt_id={item.prompt_id}"

    def get_history(self, req, record):
        prompt_id = req.path.rsplit("/", 1)[1]
        entry = self.history.get(prompt_id)
        answer = {prompt_id: entry} if entry is not None else {}
        return (200, json.dumps(answer).encode(), JSON), \
            "done" if entry else "not yet"

    def view(self, req, record):
        query = parse_qs(req.query, keep_blank_values=True)
        name = query.get("filename", [""])[0]
        sub = query.get("subfolder", [""])[0]
        kind = query.get("type", ["output"])[0]
        record["view"] = {"filename": name, "subfolder": sub, "type": kind}
        if not name or name[0] == "/" or ".." in name:
            return (400, b"", "text/plain"), "bad filename"
        png = self.images.get((name, sub, kind))
        if png is None:
            return (404, b"", "text/plain"), "no such image"
        return (200, png, "image/png"), f"{len(png)} bytes"

    def queue(self, req, record):
        if req.method == "GET":
            answer = {"queue_running": [self.running.as_list()]
                      if self.running else [],
                      "queue_pending": [i.as_list() for i in self.pending]}
            return (200, json.dumps(answer).encode(), JSON), "queue"
        if req.method != "POST":
            return (405, b"", "text/plain"), "method"
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return (400, b"", "text/plain"), "bad json"
        record["json"] = body
        if body.get("clear"):
            self.pending.clear()
        ids = body.get("delete") or []
        self.pending = [i for i in self.pending if i.prompt_id not in ids]
        return (200, b"", "text/plain"), f"delete={ids}"

    def interrupt(self, req, record):
        try:
            body = json.loads(req.body) if req.body else {}
        except ValueError:
            body = {}
        record["json"] = body
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        if self.running and wanted in (None, self.running.prompt_id):
            self.running.interrupted.set()
            return (200, b"", "text/plain"), f"interrupted {self.running.prompt_id}"
        return (200, b"", "text/plain"), "nothing to interrupt"

    def system_stats(self, req):
        if self.app.settings.health == "down":
            return 503, b"", "text/plain"
        answer = {"system": {"os": "posix", "ram_total": 68719476736,
                             "ram_free": 34359738368,
                             "comfyui_version": "0.3.60",
                             "python_version": "3.11.2", "pytorch_version":
                             "2.5.1+cu124", "embedded_python": False,
                             "argv": ["main.py"]},
                  "devices": [{"name": "cuda:0 fake-gpu", "type": "cuda",
                               "index": 0, "vram_total": 25769803776,
                               "vram_free": 12884901888,
                               "torch_vram_total": 0, "torch_vram_free": 0}]}
        return 200, json.dumps(answer).encode(), JSON

    def control(self, req):
        if req.method == "POST":
            try:
                change = json.loads(req.body)
            except ValueError:
                change = None
            if not isinstance(change, dict) or set(change) - {
                    "fault_on", "execution_error", "filename", "subfolder",
                    "busy"}:
                return 400, b'{"error": "bad change"}', JSON
            if change.get("fault_on", "prompt") not in ("prompt", "history",
                                                        "view"):
                return 400, b'{"error": "bad fault_on"}', JSON
            busy = change.pop("busy", None)
            if busy:
                self.enqueue({"9": {"class_type": "PreviewImage",
                                    "inputs": {}}}, "someone-else", busy)
            self.conf.update(change)
        return 200, json.dumps(self.conf).encode(), JSON
