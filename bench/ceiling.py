"""The ceiling: a bare FastAPI endpoint returning a small JSON object, measured beside the service."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/ceiling")
async def ceiling() -> dict[str, object]:
    return {"authorized": True, "reason": "approved", "checked_at": "2026-11-24T00:00:00.000000Z"}
