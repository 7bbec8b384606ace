"""OpenAPI post-processing: answers every request body can get, whichever view it reaches.

Any operation that reads a body may answer 415 (a Content-Type it does not read, or a multipart body its
parser cannot take apart) and 413 (the body is over MAX_REQUEST_BYTES: config.middleware), both in the
API's one error shape. They come from DRF's parsers and the middleware, not from the views, so they are
added here once instead of in every view's extend_schema (tests/test_api_fuzz.py holds the schema to
what the API answers).
"""

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
BODY_ERRORS = {
    "413": "The request body is larger than the upload limit (`extra.limit_bytes`).",
    "415": "The Content-Type is not one this operation reads, or the body cannot be parsed as it.",
}


def body_error_responses(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOKS entry: add 413 and 415 to every operation with a request body."""
    for path in result.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            responses = operation.setdefault("responses", {})
            for code, description in BODY_ERRORS.items():
                responses.setdefault(
                    code, {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}
                )
    return result
