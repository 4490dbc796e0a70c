"""The NGINX demo's nginx.conf (input/nginx_demo/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.accesslog import FORMATS
from input.nginx_demo import NginxError
from input.nginx_demo.config import render_config


def test_the_demo_config_uses_the_documented_format(tmp_path: Path) -> None:
    ports = {"port": 8080, "api_a": 1, "api_b": 2, "dead": 3, "dead2": 4, "auth": 5, "reports": 6}
    text = render_config(tmp_path, ports, tmp_path / "combined.log")
    assert FORMATS["upstream"] in text.replace("'\n                        '", "")
    assert f"access_log {tmp_path / 'access.log'} upstream;" in text
    assert f"access_log {tmp_path / 'combined.log'} combined;" in text
    assert "listen 127.0.0.1:8080 default_server;" in text
    with pytest.raises(NginxError, match="REPORTS"):
        render_config(tmp_path, {k: v for k, v in ports.items() if k != "reports"})
