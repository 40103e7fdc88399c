"""A fake dcgm-exporter on loopback: Prometheus text, new values on every scrape.

Not a test module. Two GPUs on host `node-1` (GPU 0 running pod `job-1`), a MIG
instance of GPU 1, an NVSwitch field without a GPU uuid and a Go runtime metric
(both must be ignored by our receiver).
"""

from __future__ import annotations

import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GPU0 = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
GPU1 = "GPU-bc7a12ab-4998-fdc5-0785-2678a929a142"
MIG = f"MIG-{GPU1}-2"
HOST = "node-1"
FIELDS = ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED")


def _labels(uuid: str, gpu: int, extra: str = "") -> str:
    return (
        f'gpu="{gpu}",UUID="{uuid}",device="nvidia{gpu}",modelName="NVIDIA H100 80GB HBM3",'
        f'Hostname="{HOST}",DCGM_FI_DRIVER_VERSION="535.129.03",'
        f'pci_bus_id="00000000:{0x18 + gpu:02X}:00.0"{extra}'
    )


def exposition(rng: random.Random) -> str:
    lines = []
    pod = ',container="trainer",namespace="ml",pod="job-1"'
    mig = ',GPU_I_ID="2",GPU_I_PROFILE="1g.10gb"'
    for field in FIELDS:
        lines.append(f"# HELP {field} {field}.")
        lines.append(f"# TYPE {field} gauge")
        for labels in (_labels(GPU0, 0, pod), _labels(GPU1, 1), _labels(GPU1, 1, mig)):
            lines.append(f"{field}{{{labels}}} {rng.uniform(0, 500):.3f}")
    lines.append('DCGM_FI_DEV_NVSWITCH_TEMPERATURE_CURRENT{nvswitch="0"} 41')
    lines.append("go_goroutines 12")
    return "\n".join(lines) + "\n"


class FakeExporter:
    """Serves /metrics on 127.0.0.1 until `stop`; `scrapes` counts the answers given."""

    def __init__(self) -> None:
        self.scrapes = 0
        rng = random.Random(9400)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exposition(rng).encode()
                owner.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
