"""The NGINX demo's nginx.conf: one template, rendered with the ports and paths of a run.

The site (``shop.local``, and ``admin.local`` on the same port) serves static files
and proxies to four upstream groups (see ``input/nginx_demo/upstreams.py``):
``api`` (two backends plus a port where nothing listens, so some requests are
retried on the next server: two addresses in ``$upstream_addr``), ``auth``,
``reports`` (sometimes slower than ``proxy_read_timeout``: 504) and ``legacy``
(nothing listens: 502). It logs in the ``upstream`` format, and in ``combined``
too when asked. :data:`READY_PATH` is answered without logging: the readiness probe.
"""

from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

from input.nginx_demo import NginxError

__all__ = ["CONFIG_TEMPLATE", "READY_PATH", "render_config"]

READY_PATH = "/streamkit-ready"  # answered by nginx without logging: the readiness probe

CONFIG_TEMPLATE = r"""# nginx.conf of streamkit's NGINX demo and recording, rendered by
# input/nginx_demo/config.py (the ports and paths are filled in). Loopback only.
@USER@daemon off;
master_process on;
worker_processes 1;
pid @WORK@/nginx.pid;
error_log @WORK@/error.log warn;

events {
    worker_connections 256;
}

http {
    default_type application/octet-stream;
    types {
        text/html html;
        text/css css;
        application/javascript js;
        image/png png;
        application/json json;
    }
    client_body_temp_path @WORK@/tmp/body;
    proxy_temp_path @WORK@/tmp/proxy;
    fastcgi_temp_path @WORK@/tmp/fastcgi;
    uwsgi_temp_path @WORK@/tmp/uwsgi;
    scgi_temp_path @WORK@/tmp/scgi;
    keepalive_timeout 5s;
    if_modified_since before;

    # "combined" is built into nginx (it cannot be redefined):
    #   log_format combined '$remote_addr - $remote_user [$time_local] '
    #                       '"$request" $status $body_bytes_sent '
    #                       '"$http_referer" "$http_user_agent"';
    log_format upstream '$remote_addr - $remote_user [$time_local] '
                        '"$request" $status $body_bytes_sent '
                        '"$http_referer" "$http_user_agent" '
                        '"$host" "$upstream_addr" $request_time $upstream_response_time';
    access_log @UPSTREAM_LOG@ upstream;
@COMBINED_LOG@
    proxy_connect_timeout 1s;
    proxy_read_timeout 1s;
    proxy_next_upstream error timeout http_502;

    upstream api {
        server 127.0.0.1:@API_A@ weight=5 max_fails=0;
        server 127.0.0.1:@API_B@ weight=3 max_fails=0;
        server 127.0.0.1:@DEAD@ max_fails=0;  # nothing listens: refused, the next one answers
    }
    upstream auth {
        server 127.0.0.1:@AUTH@;
    }
    upstream reports {
        server 127.0.0.1:@REPORTS@;  # sometimes slower than proxy_read_timeout: 504
    }
    upstream legacy {
        server 127.0.0.1:@DEAD@;  # nothing listens on either: 502; once both are marked
        server 127.0.0.1:@DEAD2@;  # down, $upstream_addr is the group's name, "legacy"
    }

    server {
        listen 127.0.0.1:@PORT@ default_server;
        server_name shop.local;
        root @WORK@/www;

        location = @READY@ {
            access_log off;
            return 204;
        }
        location / {
            try_files $uri $uri/ =404;
        }
        location /static/ {
            expires 1h;
        }
        location /api/ {
            proxy_pass http://api;
        }
        location /auth/ {
            proxy_pass http://auth;
        }
        location /reports/ {
            proxy_pass http://reports;
        }
        location /legacy/ {
            proxy_pass http://legacy;
        }
    }

    server {
        listen 127.0.0.1:@PORT@;
        server_name admin.local;
        root @WORK@/www;

        location /api/ {
            proxy_pass http://api;
        }
        location /auth/ {
            proxy_pass http://auth;
        }
        location / {
            return 404;
        }
    }
}
"""


def render_config(work: Path, ports: dict[str, int], combined_log: Path | None = None) -> str:
    """The nginx.conf text for a work folder and the ports (keys: port, api_a, api_b,
    dead, dead2, auth, reports). ``combined_log``: also write that log in the combined format."""
    user = ""
    if os.geteuid() == 0:  # nginx's workers would run as nobody, who cannot read the folder
        owner = pwd.getpwuid(work.stat().st_uid)
        user = f"user {owner.pw_name};\n"
    values = {
        "USER": user,
        "WORK": str(work),
        "READY": READY_PATH,
        "UPSTREAM_LOG": str(work / "access.log"),
        "COMBINED_LOG": f"    access_log {combined_log} combined;\n" if combined_log else "",
        **{name.upper(): str(port) for name, port in ports.items()},
    }
    text = CONFIG_TEMPLATE
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    missing = sorted(set(re.findall(r"@([A-Z_]+)@", text)))
    if missing:
        raise NginxError(f"nginx.conf template placeholders without a value: {missing}")
    return text
