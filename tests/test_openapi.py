"""The OpenAPI spec against the seeds: every seed endpoint lists its seed parameters, typed as the
seed types them, behind a security scheme; operation ids are unique; errors are described.

The parameters come from the forms the parser reads (app/api/fields.py), so a parameter the spec
lists is one the server reads, and the other way round.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest

from app.config import REPO_ROOT
from app.main import create_app

SEEDS = REPO_ROOT.parent / "shared" / "seeds"
CREDENTIALS = {"api_id", "api_secret"}  # SenseTime's: the security schemes carry them
# The seeds' type words, as JSON schema types ("file" and "binary": a multipart file part).
TYPES = {
    "string": "string",
    "boolean": "boolean",
    "integer": "integer",
    "int": "integer",
    "array": "array",
    "array(string)": "array",
    "array(binary)": "binary",  # numbered file parts images[0], images[1], ...
    "array(int)": "array",
    "file": "binary",
    "binary": "binary",
}

# Where a seed's table and its own samples disagree, the samples win (real clients send them).
SAMPLES_OVER_TABLES = {
    ("/face/addface", "urls"): "array",  # typed String; its sample sends a JSON array of urls
}


@cache
def spec() -> dict[str, Any]:
    return create_app().openapi()


def seed(name: str) -> str:
    path = SEEDS / name
    if not path.is_file():
        pytest.skip(f"vendor seed documents not found at {SEEDS} (the shared folder beside the "
                    "checkout); CI always has them")  # fmt: skip
    return path.read_text()


def sensetime_seed() -> dict[str, list[tuple[str, str]]]:
    """Endpoint -> (parameter, type) from each section's 请求参数 table (tab-separated)."""
    lines = seed("sensetime-v1-api.md").splitlines()
    found: dict[str, list[tuple[str, str]]] = {}
    endpoint = None
    for number, line in enumerate(lines):
        if re.fullmatch(r"/[a-z_]+/[a-z_0-9]+", line.strip()):
            endpoint = line.strip()
        if line.strip() == "请求参数" and endpoint and endpoint not in found:
            row = next(i for i in range(number, len(lines)) if lines[i].startswith("字段")) + 1
            rows = []
            while row < len(lines) and lines[row].strip():
                cells = [re.sub(r"</?code>", "", cell).strip() for cell in lines[row].split("\t")]
                rows.append((cells[0], cells[1]))
                row += 1
            found[endpoint] = rows
    return found


def tencent_seed() -> dict[str, list[tuple[str, str]]]:
    """Endpoint -> (parameter, type) from each section's 请求参数 table (`|`-separated)."""
    text = seed("tencent-youtu-face-api.md")
    found: dict[str, list[tuple[str, str]]] = {}
    for section in text.split("接口请求域名:")[1:]:
        endpoint = "/" + section.split("/", 3)[3].split()[0]
        table = section.split("请求参数", 1)[1].split("输出参数", 1)[0]
        rows = []
        for line in table.splitlines():
            cells = [cell.strip() for cell in line.split("|")]
            if len(cells) >= 4 and cells[0] not in ("参数名", "---"):
                rows.append((cells[0], cells[2]))
        found[endpoint] = rows
    return found


def operation_parameters(path: str, method: str) -> dict[str, dict]:
    """Name -> schema of what the operation takes: query/path parameters and body properties
    (the multipart body, which carries the file parts too)."""
    operation = spec()["paths"][path][method]
    found = {p["name"]: p["schema"] for p in operation.get("parameters", [])}
    content = operation.get("requestBody", {}).get("content", {})
    for media in ("multipart/form-data", "application/json"):
        if media in content:
            found.update(content[media]["schema"]["properties"])
            break
    return found


def json_type(schema: dict) -> str:
    """The schema's type, "binary" for a file part or a list of them."""
    items = schema.get("items", {}) if schema.get("type") == "array" else schema
    return "binary" if items.get("format") == "binary" else schema.get("type", "")


def check(path: str, method: str, seed_rows: list[tuple[str, str]], *, fold_case: bool) -> None:
    taken = operation_parameters(path, method)
    if fold_case:
        taken = {name.lower(): schema for name, schema in taken.items()}
    for name, seed_type in seed_rows:
        key = name.lower() if fold_case else name
        if key in CREDENTIALS:
            continue
        assert key in taken, f"{method.upper()} {path} does not declare the seed's {name}"
        wanted = SAMPLES_OVER_TABLES.get((path, name)) or TYPES[seed_type.lower()]
        got = json_type(taken[key])
        assert got == wanted, (path, name, got)
    assert spec()["paths"][path][method]["security"], f"{path} names no security scheme"


def test_every_sensetime_seed_endpoint_lists_its_seed_parameters() -> None:
    endpoints = sensetime_seed()
    assert len(endpoints) == 30
    for path, rows in endpoints.items():
        methods = spec()["paths"][path]
        assert "post" in methods, path
        check(path, "post", rows, fold_case=False)
        if path.startswith("/info/"):  # the seed's GETs: query parameters
            check(path, "get", rows, fold_case=False)
            assert all(p["in"] in ("query", "path") for p in methods["get"].get("parameters", []))
    security = spec()["paths"]["/face/detection"]["post"]["security"]
    assert security == [{"api_id": [], "api_secret": []}]


def test_every_tencent_seed_endpoint_lists_its_seed_parameters() -> None:
    """The seed's tables say `AppId`, its samples (and the SDK) send `appid`: case folded."""
    endpoints = tencent_seed()
    assert len(endpoints) == 11
    for path, rows in endpoints.items():
        check(path, "post", rows, fold_case=True)


def test_the_huawei_and_alibaba_seed_endpoints_list_their_seed_parameters() -> None:
    seed("huawei-frs-query-faces.md")  # Table 1 (path) and Table 2 (query parameters)
    faces = "/v2/{project_id}/face-sets/{face_set_name}/faces"
    rows = [("project_id", "string"), ("face_set_name", "string"), ("offset", "integer"),
            ("limit", "integer"), ("face_id", "string")]  # fmt: skip
    check(faces, "get", rows, fold_case=False)
    seed("huawei-frs-list-face-sets.md")
    check("/v2/{project_id}/face-sets", "get", [("project_id", "string")], fold_case=False)
    text = seed("alibaba-sface-get-person-faces.md")
    assert "personIdStringYes" in text and "faceIdsArrayNo" in text  # its Request body table
    check("/green/sface/faces", "post", [("personId", "string"), ("faceIds", "array")],
          fold_case=False)  # fmt: skip
    assert "clientInfo" in operation_parameters("/green/sface/faces", "post")


def test_operation_ids_are_unique_and_every_operation_declares_its_errors() -> None:
    operations = [
        (path, method, operation)
        for path, methods in spec()["paths"].items()
        for method, operation in methods.items()
    ]
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(ids) == len(set(ids))
    for path, method, operation in operations:
        assert operation.get("tags"), (path, method)
        assert operation["security"], (path, method)
        errors = [code for code in operation["responses"] if code != "200"]
        assert errors, f"{method} {path} describes no error answer"


def test_every_operation_with_a_body_or_query_declares_its_parameters() -> None:
    """No operation reads parameters the spec does not list: every route takes a form."""
    bare = {
        f"{method.upper()} {path}"
        for path, methods in spec()["paths"].items()
        for method, operation in methods.items()
        if not operation.get("parameters") and not operation.get("requestBody")
    }
    # What takes nothing but credentials: SenseTime's account and listing calls, Huawei's list.
    assert bare <= {"GET /info/api", "POST /info/api"}, bare


def test_the_detection_form_offers_a_file_upload_first() -> None:
    body = spec()["paths"]["/face/detection"]["post"]["requestBody"]
    media = list(body["content"])
    assert media[0] == "multipart/form-data"
    properties = body["content"]["multipart/form-data"]["schema"]["properties"]
    assert properties["file"] == {
        "type": "string",
        "format": "binary",
        "description": properties["file"]["description"],
    }
    assert properties["landmarks106"]["default"] is False
    top = spec()["paths"]["/face/search"]["post"]["requestBody"]["content"]
    assert top["application/json"]["schema"]["properties"]["top"] | {"description": ""} == {
        "type": "integer",
        "default": 3,
        "minimum": 1,
        "maximum": 10,
        "description": "",
    }
