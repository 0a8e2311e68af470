"""`flowmetal hook ...`: configure the webhooks `flowmetal serve` accepts at /hooks/NAME."""

from __future__ import annotations

import json
import time

import click

from flowmetal.cli.common import json_option, open_store_at, parse_args, store_option
from flowmetal.durations import parse_duration


@click.group()
def hook() -> None:
    """Webhooks that start a deployment (or message a program) from a signed request."""


@hook.command()
@click.argument("name")
@click.argument("deployment", required=False)
@click.option("--style", type=click.Choice(["github", "stripe", "none"]), default="github", show_default=True,
              help="How requests are signed (HMAC-SHA256): GitHub's X-Hub-Signature-256, Stripe's "
                   "Stripe-Signature (with a replay window), or none (unsigned: anyone may call it).")
@click.option("--secret", help="The signing secret, kept in the store.")
@click.option("--secret-env", help="Read the signing secret from this environment variable of the serving "
                                   "process instead (it stays out of the store).")
@click.option("--header", "headers", multiple=True, help="A request header the program gets (repeatable).")
@click.option("--id-header", help="A delivery-id header (e.g. X-GitHub-Delivery): the program id becomes "
                                  "NAME@VALUE, so redeliveries start nothing new.")
@click.option("--tolerance", default="5m", show_default=True,
              help="--style stripe: refuse requests signed longer ago than this (replays).")
@click.option("--args", "raw_args", help="Fixed arguments for the program, a JSON object.")
@click.option("--send-to", help="Instead of starting DEPLOYMENT: send the request to this program.")
@click.option("--send-to-header", help="Instead of starting DEPLOYMENT: send the request to the program this "
                                       "header names.")
@click.option("--channel", default="inbox", show_default=True, help="With --send-to*: the message's channel.")
@store_option
def create(name: str, deployment: str | None, style: str, secret: str | None, secret_env: str | None,
           headers: tuple[str, ...], id_header: str | None, tolerance: str, raw_args: str | None,
           send_to: str | None, send_to_header: str | None, channel: str, store_url: str | None) -> None:
    """Create (or replace) hook NAME, served at POST /hooks/NAME."""
    from flowmetal.runtime.deployments import check_name
    from flowmetal.runtime.hooks import make_config

    config = make_config(deployment=deployment, style=style, secret=secret, secret_env=secret_env,
                         headers=list(headers), id_header=id_header,
                         tolerance=parse_duration(tolerance, "--tolerance"), args=parse_args(raw_args),
                         send_to=send_to, send_to_header=send_to_header, channel=channel)
    store = open_store_at(store_url)
    if deployment is not None:
        store.get_deployment(deployment)  # UnknownDeployment: deploy it first
    store.put_hook(check_name(name), config, time.time())
    what = f"starts {deployment}" if deployment else f"sends to {send_to or 'the program ' + str(send_to_header)}"
    click.echo(f"hook {name}: POST /hooks/{name} {what} ({style} signatures)")


@hook.command(name="list")
@store_option
@json_option
def list_(store_url: str | None, as_json: bool) -> None:
    """Hooks and what they do (secrets are not shown)."""
    from flowmetal.runtime.hooks import public_config

    rows = open_store_at(store_url).list_hooks()
    if as_json:
        click.echo(json.dumps([{"name": h.name, **public_config(h.config)} for h in rows]))
        return
    for h in rows:
        c = h.config
        target = f"start {c['deployment']}" if c["action"] == "start" else \
            f"send to {c.get('send_to') or 'header ' + str(c.get('send_to_header'))}"
        click.echo(f"{h.name}  {target}  style={c['style']}  headers={','.join(c['headers']) or '-'}"
                   f"  id-header={c.get('id_header') or '-'}")


@hook.command()
@click.argument("name")
@store_option
def delete(name: str, store_url: str | None) -> None:
    """Delete hook NAME (its URL answers 404 from then on)."""
    open_store_at(store_url).delete_hook(name)
