"""Upload to REVIEW: one 5 MB JPEG posted to /api/assets/, then scanned, thumbnailed and
described by real worker processes (the Procfile's `worker` and `media` pools, forking
DjangoWorker), until the asset is in REVIEW. Reports the median over several uploads,
with the time spent in each job from the workers' own records.
Usage: python bench/upload_latency.py [--uploads 7]
"""

from __future__ import annotations

import argparse
import io
import signal
import subprocess
import tempfile
import time

from _common import PYTHON, ROOT, child_env, median, setup_django

BENCH_DB_URL = "postgres://postgres@127.0.0.1:5432/yesgoddess_bench"
media_root = tempfile.mkdtemp(prefix="yg-bench-media-")
setup_django(DATABASE_URL=BENCH_DB_URL, MEDIA_ROOT=media_root)

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from PIL import Image  # noqa: E402

from jobs.api import redis_connection  # noqa: E402
from yesgoddess.accounts.models import ApiToken  # noqa: E402
from yesgoddess.assets.models import IpAsset  # noqa: E402


def five_megabyte_jpeg() -> bytes:
    noise = Image.effect_noise((4000, 3000), 60).convert("RGB")
    gradient = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    buffer = io.BytesIO()
    Image.blend(noise, gradient, 0.5).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=7)
    options = parser.parse_args()
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True, env=child_env(DATABASE_URL=BENCH_DB_URL)
    )
    redis_connection().flushdb()
    user, _ = get_user_model().objects.get_or_create(username="bench-uploader")
    _, token = ApiToken.objects.issue(user)
    payload = five_megabyte_jpeg()
    env = child_env(DATABASE_URL=BENCH_DB_URL, MEDIA_ROOT=media_root, LOG_LEVEL="WARNING")
    pools = [["critical", "default", "scheduled", "bulk"], ["critical", "media"]]
    workers = [
        subprocess.Popen(
            [PYTHON, "manage.py", "rqworker", "--with-scheduler", *queues],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for queues in pools
    ]
    client = Client()
    latencies = []
    try:
        time.sleep(3)  # workers up
        for n in range(options.uploads):
            upload = io.BytesIO(payload)
            upload.name = f"photo-{n}.jpg"
            began = time.perf_counter()
            response = client.post(
                "/api/assets/", {"file": upload, "title": f"bench {n}"}, HTTP_AUTHORIZATION=f"Bearer {token}"
            )
            assert response.status_code == 202, response.content
            asset_id = response.json()["id"]
            while (status := IpAsset.objects.values_list("status", flat=True).get(pk=asset_id)) != "REVIEW":
                assert status == "PROCESSING", status
                if time.perf_counter() - began > 120:
                    raise SystemExit("no REVIEW after 120 s")
                time.sleep(0.01)
            latencies.append(time.perf_counter() - began)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
        redis_connection().flushdb()
    print(
        f"upload to REVIEW, 5 MB JPEG ({len(payload) / 1e6:.1f} MB), {options.uploads} uploads: median "
        f"{median(latencies):.2f} s (min {min(latencies):.2f}, max {max(latencies):.2f})"
    )


if __name__ == "__main__":
    main()
