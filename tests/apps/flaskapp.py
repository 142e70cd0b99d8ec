"""A tiny real Flask app: a page, JSON, and a form POST."""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/")
def index() -> ResponseReturnValue:
    return "Hello from Flask"


@app.get("/json")
def as_json() -> ResponseReturnValue:
    return jsonify(args=request.args.to_dict(), path=request.path)


@app.post("/form")
def form() -> ResponseReturnValue:
    return f"Hello, {request.form['name']}! ({len(request.form)} fields)"


@app.post("/json")
def post_json() -> ResponseReturnValue:
    return jsonify(received=request.get_json())
