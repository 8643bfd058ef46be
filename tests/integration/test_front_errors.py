"""The front (nginx with deploy/nginx/warden.conf.template) answers the API's paths in the
API's JSON error shape when web or live is down, and keeps its HTML for people's pages."""

import http.client
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from bench.servers import front_command
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def front_alone(tmp_path):
    """nginx in front of a web and a live process that are both down."""
    if not shutil.which("nginx") and not shutil.which("/usr/sbin/nginx"):
        pytest.skip("needs Debian's nginx (.ci/run installs it)")
    port = free_port()
    process = subprocess.Popen(
        front_command(tmp_path / "nginx", free_port(), free_port(), port, workers=1),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
        except urllib.error.HTTPError:
            break  # nginx answered (502: web is down)
        except OSError:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def fetch(url: str, method: str = "GET", body: bytes | None = None) -> urllib.error.HTTPError:
    request = urllib.request.Request(url, data=body, method=method, headers={"Host": "localhost"})
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(request, timeout=5)
    return failure.value


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/metrics"), ("GET", "/api/v1/agent/actions?wait=30")],
    ids=["web down", "live down"],
)
def test_the_api_answers_json_when_its_process_is_down(front_alone, method, path):
    # when an agent posts or polls while the process behind the path is down
    error = fetch(front_alone + path, method, b"{}" if method == "POST" else None)

    # then it reads the API's error shape, with when to try again
    assert error.code == 502
    assert error.headers["Content-Type"] == "application/json"
    assert json.loads(error.read())["error"]["code"] == "unavailable"
    assert int(error.headers["Retry-After"]) > 0


def test_a_body_over_the_front_limit_is_a_json_error(front_alone):
    # the headers alone announce 4 MB: nginx answers before any of it is sent
    connection = http.client.HTTPConnection(front_alone.removeprefix("http://"), timeout=5)
    connection.putrequest("POST", "/api/v1/metrics", skip_host=True)
    connection.putheader("Host", "localhost")
    connection.putheader("Content-Length", str(4 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()

    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "invalid"
    connection.close()


def test_people_s_pages_keep_the_front_s_html(front_alone):
    error = fetch(front_alone + "/console/")

    assert error.code == 502
    assert error.headers["Content-Type"].startswith("text/html")
