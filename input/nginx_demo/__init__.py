"""A real nginx on loopback with a few upstreams, and light traffic to it: the NGINX demo.

Used by ``python -m input.nginx --demo`` (what ``make run`` starts when
``NGINX_LOG_PATH`` is unset) and by ``input/data/nginx/record.py``, which
recorded the shipped logs with it. Everything listens on 127.0.0.1 only.
One module per part:

* ``config``: the nginx.conf it writes (free ports, temp paths under the work
  folder, the ``upstream`` log format, and ``combined`` too when asked);
* ``upstreams``: the upstream servers, threads in this process;
* ``traffic``: the requests it sends (a weighted mix, some not HTTP at all) and
  the driver that sends them at a bounded rate;
* ``site``: :class:`~input.nginx_demo.site.DemoSite`, which writes the config,
  starts the upstreams and the nginx process, and stops them all.
"""

from __future__ import annotations

__all__ = ["NginxError"]


class NginxError(RuntimeError):
    """nginx could not be configured or started; the message has its output."""
