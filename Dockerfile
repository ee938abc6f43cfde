# syntax=docker/dockerfile:1
# Izin Siaran: migrations, then uvicorn, as an unprivileged user.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements/main.lock /tmp/main.lock
RUN /opt/venv/bin/pip install --require-hashes -r /tmp/main.lock
WORKDIR /srv/izin-siaran
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
# Editable: the code stays in /srv/izin-siaran beside migrations/, which
# `izin-siaran migrate` reads; the runtime stage copies both to the same paths.
RUN /opt/venv/bin/pip install --no-deps -e . && /opt/venv/bin/python -m compileall -q app migrations

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin izin \
    && mkdir -p /var/lib/izin-siaran && chown izin /var/lib/izin-siaran
COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv/izin-siaran /srv/izin-siaran
ENV PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/var/lib/izin-siaran \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /srv/izin-siaran
USER izin
VOLUME ["/var/lib/izin-siaran"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["sh", "-c", "izin-siaran migrate && exec izin-siaran serve --host 0.0.0.0 --port 8000"]
