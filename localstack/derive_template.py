#!/usr/bin/env python3
"""Derive the template an emulator deploys from the SAM template `sam deploy` uses.

`template.yaml` is written for AWS and `sam build`: every function has `CodeUri:
functions` (the package, so cargo-lambda finds its binaries) and names its binary in `Metadata.BuildProperties.Binary` (cargo-lambda). For
`aws cloudformation package` each function needs a folder holding its `bootstrap`,
and the emulators miss a few things AWS has. This script writes, under --out-dir:

  <LogicalId>/bootstrap     a copy of <binaries-dir>/<Binary> for each function
  template.yaml             the template with each CodeUri pointing at that folder,
                            plus the emulator adaptations below

Adaptations (each is printed, none changes what the functions do):

  all emulators   every WebSocket API (AWS::ApiGatewayV2::Api, ProtocolType WEBSOCKET)
                  gets a pinned id (a tag, --ws-api-id), so the Management API endpoint
                  the functions need (CHAT_APIGW_ENDPOINT) is known before the deploy.
                  The JwksUrl parameter also takes http://127.0.0.1:PORT/... : the
                  e2e's identity provider serves its key set on loopback (the functions
                  accept plain HTTP only there; on AWS the parameter stays https only).
  ministack       - AWS::ApiGatewayV2::RouteResponse is not a resource type it knows:
                    these resources are dropped. ministack sends a route's Lambda
                    response body back to the client whether or not the route has a
                    route response, so message routes answer as on AWS.
                  - an AWS::CloudWatch::Alarm on metric math (`Metrics`) is refused:
                    such alarms are dropped (the e2e exercises no alarm).
                  - it ignores the OpenAPI `Body` of an AWS::ApiGatewayV2::Api, which is
                    where the SAM transform puts the routes of an AWS::Serverless::HttpApi.
                    Each such API is lowered to an AWS::ApiGatewayV2::Api + Stage (with
                    the API's access log and default route settings), and
                    each `HttpApi` event of a function to an Integration (AWS_PROXY,
                    payload 2.0) + Route + Lambda Permission: the same routes, spelled
                    out.

Short-form tags (!Ref, !GetAtt, !Sub, ...) are read and written in their long form
(Ref, Fn::GetAtt, ...). Prints a JSON summary on stdout.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shutil
import sys

import yaml

# --------------------------------------------------------------------------- YAML


class CfnLoader(yaml.SafeLoader):
    """SafeLoader without timestamp resolution (keeps "2010-09-09" a string)."""


CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_FN_TAGS = [
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "If", "ImportValue",
    "Join", "Not", "Or", "Select", "Split", "Sub", "Transform", "ToJsonString", "Length",
    "GetAtt",
    # The rule functions (a template's `Rules`).
    "Contains", "EachMemberEquals", "EachMemberIn", "RefAll", "ValueOf", "ValueOfAll",
]


def _construct(loader: yaml.Loader, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _add_tag(tag: str, key: str) -> None:
    def ctor(loader, node):
        value = _construct(loader, node)
        if key == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {key: value}

    CfnLoader.add_constructor("!" + tag, ctor)


_add_tag("Ref", "Ref")
_add_tag("Condition", "Condition")
for _t in _FN_TAGS:
    _add_tag(_t, "Fn::" + _t)


def load_template(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise SystemExit(f"{path}: not a CloudFormation template (no Resources)")

    def fix(v):  # belt and braces: no dates/times out of YAML
        if isinstance(v, (datetime.date, datetime.datetime)):
            return v.isoformat()
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return fix(doc)


class _Dumper(yaml.SafeDumper):
    pass


def _str_repr(dumper, data):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_repr)


def dump_template(doc: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(doc, f, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)


# --------------------------------------------------------------------------- helpers


def refs_to(node, name: str) -> bool:
    """Whether `node` references resource `name` (Ref, GetAtt, Sub, DependsOn)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Ref" and v == name:
                return True
            if k == "Fn::GetAtt" and isinstance(v, list) and v and v[0] == name:
                return True
            if k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                if isinstance(text, str) and ("${" + name + "}" in text or "${" + name + "." in text):
                    return True
            if refs_to(v, name):
                return True
    elif isinstance(node, list):
        return any(refs_to(x, name) for x in node)
    return False


def resolve_scalar(value, params: dict, overrides: dict):
    """A literal or a Ref to a parameter (override, else default); None otherwise."""
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        if name in overrides:
            return overrides[name]
        p = params.get(name)
        if isinstance(p, dict) and "Default" in p:
            return str(p["Default"])
    return None


def is_ref(value, name: str) -> bool:
    return isinstance(value, dict) and value.get("Ref") == name


def note(msg: str) -> None:
    print(f"derive_template: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- steps


def lay_out_functions(doc: dict, src_dir: str, out_dir: str, binaries_dir: str) -> dict:
    functions = {}
    for lid, res in doc["Resources"].items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.setdefault("Properties", {})
        binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if binary:
            src = os.path.join(binaries_dir, binary)
            if not os.path.isfile(src):
                raise SystemExit(f"{lid}: binary {src} not found (build it first)")
            fdir = os.path.join(out_dir, lid)
            os.makedirs(fdir, exist_ok=True)
            dst = os.path.join(fdir, "bootstrap")
            if os.path.exists(dst):
                os.remove(dst)
            shutil.copy2(src, dst)
            os.chmod(dst, 0o755)
            props["CodeUri"] = lid + "/"
            functions[lid] = binary
        else:
            code_uri = props.get("CodeUri")
            if isinstance(code_uri, str) and "://" not in code_uri:
                props["CodeUri"] = os.path.abspath(os.path.join(src_dir, code_uri))
            functions[lid] = None
            note(f"{lid}: no Metadata.BuildProperties.Binary, CodeUri kept ({props.get('CodeUri')})")
    return functions


def websocket_apis(doc: dict) -> list[str]:
    return [
        lid for lid, res in doc["Resources"].items()
        if isinstance(res, dict) and res.get("Type") == "AWS::ApiGatewayV2::Api"
        and (res.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET"
    ]


def stage_of(doc: dict, api_lid: str, params: dict, overrides: dict):
    for res in doc["Resources"].values():
        if isinstance(res, dict) and res.get("Type") == "AWS::ApiGatewayV2::Stage":
            props = res.get("Properties") or {}
            if is_ref(props.get("ApiId"), api_lid):
                return resolve_scalar(props.get("StageName"), params, overrides)
    return None


def pin_ids(doc: dict, pins: dict, tag: str) -> None:
    for lid, api_id in pins.items():
        props = doc["Resources"][lid].setdefault("Properties", {})
        tags = props.get("Tags") or {}
        if not isinstance(tags, dict):
            raise SystemExit(f"{lid}: Tags is not a map, cannot pin the API id")
        tags[tag] = api_id
        props["Tags"] = tags
        note(f"{lid}: API id pinned to {api_id} (tag {tag})")


def allow_a_loopback_key_set(params: dict) -> None:
    p = params.get("JwksUrl")
    if isinstance(p, dict) and "AllowedPattern" in p:
        p["AllowedPattern"] = "(https://\\S+|http://127\\.0\\.0\\.1:[0-9]+/\\S*)?"
        note("JwksUrl: http://127.0.0.1:PORT/... allowed (the e2e's identity provider)")


def drop_route_responses(doc: dict) -> list[str]:
    resources = doc["Resources"]
    dropped = [lid for lid, r in resources.items()
               if isinstance(r, dict) and r.get("Type") == "AWS::ApiGatewayV2::RouteResponse"]
    for lid in dropped:
        del resources[lid]
    for lid in dropped:
        for other, r in resources.items():
            deps = r.get("DependsOn")
            if deps == lid:
                del r["DependsOn"]
            elif isinstance(deps, list) and lid in deps:
                r["DependsOn"] = [d for d in deps if d != lid]
            if refs_to({k: v for k, v in r.items() if k != "DependsOn"}, lid):
                raise SystemExit(f"{other} references {lid}, which ministack cannot create")
        if refs_to(doc.get("Outputs") or {}, lid):
            raise SystemExit(f"an output references {lid}, which ministack cannot create")
    if dropped:
        note(f"dropped {len(dropped)} AWS::ApiGatewayV2::RouteResponse (ministack answers with "
             f"the Lambda body anyway): {', '.join(dropped)}")
    return dropped


def drop_metric_math_alarms(doc: dict) -> list[str]:
    resources = doc["Resources"]
    dropped = [lid for lid, r in resources.items()
               if isinstance(r, dict) and r.get("Type") == "AWS::CloudWatch::Alarm"
               and "Metrics" in (r.get("Properties") or {})]
    for lid in dropped:
        del resources[lid]
        for other, r in resources.items():
            if refs_to(r, lid):
                raise SystemExit(f"{other} references {lid}, which ministack cannot create")
    if dropped:
        note(f"dropped {len(dropped)} metric-math AWS::CloudWatch::Alarm (ministack has no "
             f"metric math; the e2e exercises no alarm): {', '.join(dropped)}")
    return dropped


_HTTPAPI_UNSUPPORTED = ("DefinitionBody", "DefinitionUri", "Auth", "Domain", "RouteSettings",
                        "StageVariables")
# Carried over to the lowered AWS::ApiGatewayV2::Stage as they are.
_HTTPAPI_STAGE_PROPERTIES = ("AccessLogSettings", "DefaultRouteSettings")


def lower_http_apis(doc: dict) -> list[str]:
    resources = doc["Resources"]
    globals_api = ((doc.get("Globals") or {}).get("HttpApi")) or {}
    # Events with no ApiId use SAM's implicit API.
    events = []  # (function lid, event name, event props, api lid)
    for flid, res in list(resources.items()):
        if not isinstance(res, dict) or res.get("Type") != "AWS::Serverless::Function":
            continue
        for ename, ev in ((res.get("Properties") or {}).get("Events") or {}).items():
            if isinstance(ev, dict) and ev.get("Type") == "HttpApi":
                eprops = ev.get("Properties") or {}
                api = eprops.get("ApiId")
                if api is None:
                    api_lid = "ServerlessHttpApi"
                elif isinstance(api, dict) and "Ref" in api:
                    api_lid = api["Ref"]
                else:
                    raise SystemExit(f"{flid}.{ename}: ApiId must be a Ref to an HttpApi in this template")
                events.append((flid, ename, eprops, api_lid))
    apis = sorted({e[3] for e in events} | {
        lid for lid, r in resources.items()
        if isinstance(r, dict) and r.get("Type") == "AWS::Serverless::HttpApi"})
    for api_lid in apis:
        res = resources.get(api_lid)
        if res is None:
            if api_lid != "ServerlessHttpApi":
                raise SystemExit(f"HttpApi event refers to {api_lid}, which is not in the template")
            res = {"Type": "AWS::Serverless::HttpApi", "Properties": {}}
        if res.get("Type") != "AWS::Serverless::HttpApi":
            raise SystemExit(f"{api_lid}: HttpApi events must refer to an AWS::Serverless::HttpApi")
        props = {**copy.deepcopy(globals_api), **(res.get("Properties") or {})}
        unsupported = [k for k in _HTTPAPI_UNSUPPORTED if k in props]
        if unsupported:
            raise SystemExit(f"{api_lid}: cannot lower properties {unsupported} for ministack")
        api_props = {"Name": {"Fn::Sub": "${AWS::StackName}-" + api_lid}, "ProtocolType": "HTTP"}
        if "CorsConfiguration" in props:
            api_props["CorsConfiguration"] = props["CorsConfiguration"]
        if "Description" in props:
            api_props["Description"] = props["Description"]
        if "DisableExecuteApiEndpoint" in props:
            api_props["DisableExecuteApiEndpoint"] = props["DisableExecuteApiEndpoint"]
        if isinstance(props.get("Tags"), dict):
            api_props["Tags"] = props["Tags"]
        new = {"Type": "AWS::ApiGatewayV2::Api", "Properties": api_props}
        for k in ("Condition", "DependsOn"):
            if k in res:
                new[k] = res[k]
        resources[api_lid] = new
        stage = {"ApiId": {"Ref": api_lid}, "StageName": props.get("StageName", "$default"),
                 "AutoDeploy": True}
        for k in _HTTPAPI_STAGE_PROPERTIES:
            if k in props:
                stage[k] = props[k]
        resources[api_lid + "Stage"] = {"Type": "AWS::ApiGatewayV2::Stage", "Properties": stage}
        note(f"{api_lid}: AWS::Serverless::HttpApi lowered to AWS::ApiGatewayV2::Api + Stage")
    for flid, ename, eprops, api_lid in events:
        base = f"{flid}{ename}"
        method = str(eprops.get("Method", "ANY")).upper()
        if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
            method = "ANY"
        path = eprops.get("Path")
        route_key = f"{method} {path}" if path else "$default"
        integration = {
            "ApiId": {"Ref": api_lid},
            "IntegrationType": "AWS_PROXY",
            "IntegrationMethod": "POST",
            "PayloadFormatVersion": str(eprops.get("PayloadFormatVersion", "2.0")),
            "IntegrationUri": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/"
                                          "2015-03-31/functions/${" + flid + ".Arn}/invocations"},
        }
        if "TimeoutInMillis" in eprops:
            integration["TimeoutInMillis"] = eprops["TimeoutInMillis"]
        resources[base + "Integration"] = {"Type": "AWS::ApiGatewayV2::Integration", "Properties": integration}
        resources[base + "Route"] = {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
            "ApiId": {"Ref": api_lid}, "RouteKey": route_key,
            "Target": {"Fn::Sub": "integrations/${" + base + "Integration}"}}}
        resources[base + "Permission"] = {"Type": "AWS::Lambda::Permission", "Properties": {
            "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": flid},
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${"
                                     + api_lid + "}/*"}}}
        del resources[flid]["Properties"]["Events"][ename]
        note(f"{flid}.{ename}: route '{route_key}' on {api_lid} spelled out")
    for flid, res in resources.items():
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function":
            if (res.get("Properties") or {}).get("Events") == {}:
                del res["Properties"]["Events"]
    return apis


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--binaries-dir", required=True, help="where <Binary> files are (target/function)")
    ap.add_argument("--emulator", choices=["ministack", "localstack"], default="ministack")
    ap.add_argument("--ws-api-id", action="append", default=[], metavar="ID",
                    help="id to pin each WebSocket API to, in template order")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="parameter overrides (used to resolve the stage name)")
    args = ap.parse_args()

    doc = load_template(args.template)
    src_dir = os.path.dirname(os.path.abspath(args.template))
    out_dir = os.path.abspath(args.out_dir)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    overrides = dict(p.split("=", 1) for p in args.param)
    params = doc.get("Parameters") or {}

    functions = lay_out_functions(doc, src_dir, out_dir, os.path.abspath(args.binaries_dir))

    ws = websocket_apis(doc)
    if len(args.ws_api_id) < len(ws):
        raise SystemExit(f"{len(ws)} WebSocket APIs ({', '.join(ws)}) but {len(args.ws_api_id)} --ws-api-id")
    pins = dict(zip(ws, args.ws_api_id))
    pin_ids(doc, pins, "ms-custom-id" if args.emulator == "ministack" else "_custom_id_")
    allow_a_loopback_key_set(params)

    http_apis: list[str] = []
    if args.emulator == "ministack":
        drop_route_responses(doc)
        drop_metric_math_alarms(doc)
        http_apis = lower_http_apis(doc)
    else:
        http_apis = sorted(lid for lid, r in doc["Resources"].items()
                           if isinstance(r, dict) and r.get("Type") == "AWS::Serverless::HttpApi")

    out = os.path.join(out_dir, "template.yaml")
    dump_template(doc, out)
    summary = {
        "template": out,
        "parameters": sorted(params),
        "functions": functions,
        "websocket_apis": [{"logicalId": lid, "apiId": pins[lid],
                            "stage": stage_of(doc, lid, params, overrides)} for lid in ws],
        "http_apis": http_apis,
    }
    json.dump(summary, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
