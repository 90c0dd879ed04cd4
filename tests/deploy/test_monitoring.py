"""Prometheus rules and the Grafana dashboard: promtool checks and unit tests, and every
metric they query exists in :mod:`storycue.metrics`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploytools import REPO

from storycue import metrics

RULES_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted((REPO / "deploy" / "grafana").glob("*.json"))
#: Series Prometheus itself provides (not storycue metrics).
PROMETHEUS_BUILTINS = {"up"}
_METRIC = re.compile(r"\bstorycue_[a-z0-9_]+\b")
_RECORDED = re.compile(r"\bstorycue:[a-z0-9_:]+\b")


def promtool(binary: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def load_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for f in RULE_FILES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel (rows included)."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            found.extend((p.get("title", ""), t["expr"]) for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    return found


def test_there_are_rules_tests_and_a_dashboard() -> None:
    assert RULE_FILES and RULE_TESTS and DASHBOARDS


def test_promtool_check_rules(promtool_bin: Path) -> None:
    result = promtool(promtool_bin, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    n_rules = len(load_rules())
    assert f"SUCCESS: {n_rules} rules found" in result.stdout


def test_promtool_test_rules(promtool_bin: Path) -> None:
    result = promtool(promtool_bin, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_catches_a_broken_expectation(promtool_bin: Path, tmp_path: Path) -> None:
    """The unit tests have teeth: the same tests against a rule with a wrong threshold fail."""
    rules = yaml.safe_load((RULES_DIR / "storycue-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "StorycueKafkaConsumerLag":
                rule["expr"] = rule["expr"].replace("> 1000", "> 5000")
    (tmp_path / "storycue-rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests").mkdir()
    for t in RULE_TESTS:
        (tmp_path / "tests" / t.name).write_text(t.read_text())
    result = promtool(promtool_bin, "test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert result.returncode != 0
    assert "StorycueKafkaConsumerLag" in result.stdout + result.stderr


def test_every_alert_has_severity_summary_and_runbook() -> None:
    alerts = [r for r in load_rules() if "alert" in r]
    assert len(alerts) >= 10
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook_url"].startswith("docs/operations.md#"), rule["alert"]
        assert rule["alert"].startswith("Storycue"), rule["alert"]


def test_every_metric_in_the_rules_exists() -> None:
    exposed = metrics.exposed_names()
    rules = load_rules()
    recorded = {r["record"] for r in rules if "record" in r}
    used: set[str] = set()
    for rule in rules:
        used |= set(_METRIC.findall(rule["expr"]))
        assert set(_RECORDED.findall(rule["expr"])) <= recorded, rule
        # Nothing else is queried but Prometheus' own `up`.
        bare = set(re.findall(r"(?<![\w:{,=\"'])([a-z_][a-z0-9_]*)\s*\{", rule["expr"]))
        assert bare <= exposed | PROMETHEUS_BUILTINS, (rule.get("alert"), bare - exposed)
    missing = used - exposed
    assert not missing, f"rules query metrics storycue.metrics does not define: {missing}"
    # The alerts cover the signals.
    for family in (
        "storycue_http_request_errors_total",
        "storycue_queue_depth",
        "storycue_tasks_total",
        "storycue_kafka_consumer_lag",
        "storycue_kafka_messages_dead_lettered_total",
        "storycue_jobs",
        "storycue_embeddings_written_total",
        "storycue_dependency_up",
        "storycue_model_load_seconds",
    ):
        assert family in used, family


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_parses_and_queries_only_storycue_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in names
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 15
    exposed = metrics.exposed_names()
    used: set[str] = set()
    for title, expr in exprs:
        found = set(_METRIC.findall(expr))
        assert found, f"panel {title!r} queries no storycue metric: {expr}"
        assert found <= exposed, f"panel {title!r}: {found - exposed} not in storycue.metrics"
        used |= found
    # The dashboard shows every family of the operations contract.
    families = {
        "storycue_http_requests_total",
        "storycue_http_request_errors_total",
        "storycue_http_request_duration_seconds_bucket",
        "storycue_queue_depth",
        "storycue_tasks_total",
        "storycue_task_duration_seconds_bucket",
        "storycue_batch_size_sum",
        "storycue_stage_duration_seconds_bucket",
        "storycue_kafka_consumer_lag",
        "storycue_kafka_messages_processed_total",
        "storycue_kafka_messages_dead_lettered_total",
        "storycue_jobs",
        "storycue_model_load_seconds",
        "storycue_embeddings_written_total",
    }
    assert families <= used, families - used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_are_valid_promql(promtool_bin: Path, path: Path, tmp_path: Path) -> None:
    """Each query, with Grafana's variables substituted, checked by promtool as a rule."""
    exprs = dashboard_exprs(json.loads(path.read_text()))
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$namespace", ".*"),
        }
        for i, (_, expr) in enumerate(exprs)
    ]
    f = tmp_path / "dashboard-queries.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool(promtool_bin, "check", "rules", f)
    assert result.returncode == 0, result.stdout + result.stderr
