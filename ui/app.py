"""The Gradio dashboard: layout and wiring. ``workbench dashboard`` calls ``serve``.

The app is built by ``build_app`` (never at import). Everything it shows comes from the
run store through ``ui.live`` (a timer polls ``store.version`` and redraws only the
figures whose inputs changed); everything it does is a store command or a training
subprocess (``ui.control``). API endpoints (for ``gradio_client``): ``/start_run``,
``/send_command``, ``/switch_strategy``, ``/list_events``, ``/list_commands``,
``/run_state``, ``/list_runs``.
"""

from __future__ import annotations

import atexit
import json
from pathlib import Path
from typing import Any

import gradio as gr

from ui import compare, forms, live, metrics_view, tables
from ui.control import Controller
from ui.drilldown import SAMPLE_COLUMNS
from ui.security import HostGuard, allowed_hosts, exposure_auth

#: Seconds between live-view polls (see benchmarks/dashboard_refresh.py for their cost).
POLL_SECONDS = 2.0
RUNS_POLL_SECONDS = 5.0

CSS = """
.wb-status {font-size: 0.95em}
#collapse-heatmap .js-plotly-plot {cursor: pointer}
"""

#: Plotly click events do not reach gr.Plot: forward a click on the heatmap to a hidden
#: textbox (problem id + a nonce, so clicking the same cell again fires too).
JS = """
() => {
  const hook = () => {
    document.querySelectorAll('#collapse-heatmap div[data-testid="plotly"]').forEach((gd) => {
      if (gd._wbHooked || typeof gd.on !== 'function') return;
      gd._wbHooked = true;
      gd.on('plotly_click', (ev) => {
        const pt = ev && ev.points && ev.points[0];
        const box = document.querySelector('#clicked-problem textarea, #clicked-problem input');
        if (!pt || !box) return;
        box.value = String(pt.y) + '|' + Date.now();
        box.dispatchEvent(new Event('input', {bubbles: true}));
      });
    });
  };
  setInterval(hook, 700);
}
"""


#: The tabs, by id (also the URL's ?tab= values).
TAB_IDS = ("runs", "live", "metrics", "compare")

def url_js(key: str, value: str | None = None) -> str:
    """JS keeping ``?key=`` of the page's URL in step with a component's value (or with the
    constant ``value``): history.replaceState, so no reload and no new history entry."""
    arg, x = ("v", "v") if value is None else ("", json.dumps(value))
    # until the page has read its URL (window.wbUrlRead, set after the load event), events
    # fired by the initial render must not rewrite it
    return (f"({arg}) => {{ if (!window.wbUrlRead) return; const x = {x}; const u = new URL(window.location.href); "
            f"if (x) {{ u.searchParams.set('{key}', String(x)); }} else {{ u.searchParams.delete('{key}'); }} "
            "window.history.replaceState(null, '', u.toString()); }")


#: Element ids that differ from "<panel>-plot" (the heatmap's is hooked by JS above).
PLOT_IDS = {"heatmap": "collapse-heatmap"}


def _warn(exc: Exception) -> str:
    gr.Warning(str(exc))
    return f"⚠️ {exc}"


def build_app(workspace: str | Path = "runs", poll_seconds: float = POLL_SECONDS,
              allow_models: list[str] | tuple[str, ...] = ()) -> gr.Blocks:
    """The dashboard on the run store in ``workspace`` (``demo.controller`` holds its state).
    Runs can be started on the embedded models and on ``allow_models`` (the operator's
    ``--allow-model``: local folders or Hub ids) only."""
    ctl = Controller(workspace, allow_models)
    strategies = forms.strategy_choices()
    initial_runs = ctl.run_ids()

    with gr.Blocks(title="RLVR Collapse Workbench", fill_width=True) as demo:
        gr.Markdown(f"## RLVR Collapse Workbench\nRun store: `{ctl.workspace}` — the dashboard reads the store and "
                    "writes commands, so it watches and steers runs started here, by `workbench train` or a notebook.")
        with gr.Row(equal_height=True):
            run_select = gr.Dropdown(choices=initial_runs, value=initial_runs[0] if initial_runs else None,
                                     label="Run", allow_custom_value=True, scale=3, elem_id="run-select")
            step_n = gr.Number(value=1, precision=0, label="N", minimum=1, scale=0, min_width=70, elem_id="step-n")
            with gr.Column(scale=4, min_width=420):
                with gr.Row():
                    b_pause = gr.Button("Pause", size="sm", elem_id="btn-pause")
                    b_resume = gr.Button("Resume", size="sm", elem_id="btn-resume")
                    b_step = gr.Button("Step N", size="sm", elem_id="btn-step")
                    b_eval = gr.Button("Evaluate now", size="sm", elem_id="btn-evaluate")
                    b_ckpt = gr.Button("Checkpoint", size="sm", elem_id="btn-checkpoint")
                    b_stop = gr.Button("Stop", size="sm", variant="stop", elem_id="btn-stop")
        status_md = gr.Markdown(ctl.status_line(None, None), elem_classes=["wb-status"], elem_id="run-status")
        control_msg = gr.Markdown("", elem_id="control-msg")
        seen = gr.State(None)

        with gr.Tabs(selected="live") as tabs:
            # ------------------------------------------------------------------ Runs
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as tab_runs:
                runs_filter = gr.Textbox(label="Filter runs", placeholder="words in the id, status, strategy, model, "
                                         "task or tags (e.g. bbg finished)", elem_id="runs-filter")
                runs_df = gr.Dataframe(value=ctl.runs_rows(), headers=tables.RUN_COLUMNS, interactive=False, wrap=True,
                                       label="Runs in the store (click a row to select it)", elem_id="runs-table",
                                       max_height=320)
                with gr.Row():
                    b_csv = gr.Button("Download scalars (CSV)", size="sm", elem_id="btn-export-csv")
                    b_parquet = gr.Button("Download scalars (Parquet)", size="sm", elem_id="btn-export-parquet")
                    b_evals = gr.Button("Download evaluations (JSON)", size="sm", elem_id="btn-export-evals")
                export_file = gr.File(label="Export of the selected run", interactive=False, elem_id="export-file")
                with gr.Accordion("Name, notes, tags, delete (selected run)", open=False, elem_id="housekeeping"):
                    with gr.Row():
                        h_name = gr.Textbox(label="Name", scale=2, elem_id="run-name")
                        h_tags = gr.Textbox(label="Tags (comma-separated)", scale=2, elem_id="run-tags")
                        b_save = gr.Button("Save", size="sm", scale=0, elem_id="btn-save-meta")
                    h_notes = gr.Textbox(label="Notes", lines=3, elem_id="run-notes")
                    with gr.Row():
                        h_confirm = gr.Textbox(label="To delete the run, its checkpoints and log: type its id",
                                               scale=3, elem_id="delete-confirm")
                        b_delete = gr.Button("Delete run", variant="stop", size="sm", scale=1, elem_id="btn-delete")
                    h_msg = gr.Markdown("", elem_id="housekeeping-msg")
                gr.Markdown("### Start a new run")
                with gr.Row():
                    f_model = gr.Dropdown(choices=forms.model_choices(ctl.policy), value=forms.default_model(),
                                          label="Model", elem_id="new-model",
                                          info="embedded models, and those allowed with --allow-model")
                    f_task = gr.Dropdown(choices=forms.task_choices(), value="two_primes", label="Task",
                                         elem_id="new-task")
                    f_strategy = gr.Dropdown(choices=strategies, value="grpo", allow_custom_value=True,
                                             label="Strategy", info="a preset, or pieces joined by '+'",
                                             elem_id="new-strategy")
                f_doc = gr.Markdown(forms.strategy_doc("grpo"))
                f_params = gr.Dataframe(value=forms.param_rows("grpo"), headers=forms.PARAM_COLUMNS,
                                        type="array", interactive=True, label="Strategy parameters (edit 'value')",
                                        elem_id="new-params", wrap=True, max_height=260)
                D = forms.DEFAULTS
                with gr.Row():
                    f_steps = gr.Number(value=D["steps"], precision=0, label="Steps", elem_id="new-steps")
                    f_G = gr.Number(value=D["group_size"], precision=0, label="G (samples per prompt)", elem_id="new-G")
                    f_B = gr.Number(value=D["prompts_per_step"], precision=0, label="Prompts per step (B)",
                                    elem_id="new-B")
                    f_every = gr.Number(value=D["eval_every"], precision=0, label="Evaluate every (steps)",
                                        elem_id="new-eval-every")
                    f_n = gr.Number(value=D["eval_n"], precision=0, label="Evaluation samples n", elem_id="new-eval-n")
                with gr.Accordion("More settings", open=False):
                    with gr.Row():
                        f_lr = gr.Number(value=D["lr"], label="Learning rate", elem_id="new-lr")
                        f_maxp = gr.Number(value=D["eval_max_problems"], precision=0,
                                           label="Evaluation problems (0 = whole split)", elem_id="new-eval-max")
                        f_seen = gr.Number(value=D["eval_seen_problems"], precision=0,
                                           label="'Seen' training problems evaluated", elem_id="new-eval-seen")
                        f_seed = gr.Number(value=D["seed"], precision=0, label="Seed", elem_id="new-seed")
                        f_name = gr.Textbox(label="Name (part of the run id)", elem_id="new-name")
                    f_extra = gr.Textbox(label="Other config fields, one KEY=VALUE per line (task data files: "
                                         f"inside {ctl.policy.data_dir})",
                                         placeholder="loss.eps_high=0.28\noptim.updates_per_batch=2", lines=2,
                                         elem_id="new-extra")
                b_start = gr.Button("Start run", variant="primary", elem_id="btn-start")
                start_msg = gr.Markdown("", elem_id="start-msg")
                with gr.Row():
                    events_df = gr.Dataframe(headers=tables.EVENT_COLUMNS, interactive=False, wrap=True,
                                             label="Events of the selected run (newest first)", elem_id="events-table",
                                             max_height=300)
                    commands_df = gr.Dataframe(headers=tables.COMMAND_COLUMNS,
                                               interactive=False, wrap=True, label="Commands (newest first)",
                                               elem_id="commands-table", max_height=300)

            # ------------------------------------------------------------------ Live
            with gr.Tab("Live", id="live", elem_id="tab-live") as tab_live:
                with gr.Accordion("Switch strategy", open=False, elem_id="switch-panel"):
                    with gr.Row():
                        s_strategy = gr.Dropdown(choices=strategies, value="bbg", allow_custom_value=True,
                                                 label="New strategy", scale=2, elem_id="switch-strategy")
                        s_text = gr.Textbox(label="or parameters as KEY=VALUE (e.g. bbg.k=8)", scale=2,
                                            elem_id="switch-text")
                        s_when = gr.Radio([("at the next step boundary", "next"), ("after step N", "at")],
                                          value="next", label="When", scale=2, elem_id="switch-when")
                        s_at = gr.Number(value=None, precision=0, minimum=0, label="step N", scale=1, min_width=90,
                                         elem_id="switch-at")
                        b_switch = gr.Button("Apply switch…", variant="primary", scale=1, elem_id="btn-switch")
                    with gr.Group(visible=False, elem_id="switch-confirm") as s_confirm:
                        s_question = gr.Markdown("", elem_id="switch-question")
                        with gr.Row():
                            b_confirm = gr.Button("Confirm switch", variant="primary", size="sm",
                                                  elem_id="btn-switch-confirm")
                            b_cancel = gr.Button("Cancel", size="sm", elem_id="btn-switch-cancel")
                    s_doc = gr.Markdown(forms.strategy_doc("bbg"))
                    s_params = gr.Dataframe(value=forms.param_rows("bbg"), headers=forms.PARAM_COLUMNS, type="array",
                                            interactive=True, label="Parameters (edit 'value')", wrap=True,
                                            elem_id="switch-params", max_height=240)
                    switch_msg = gr.Markdown("", elem_id="switch-msg")
                comp: dict[str, Any] = {}

                def plots(row: str) -> None:
                    with gr.Row():
                        for name in live.figure_rows()[row]:
                            comp[name] = gr.Plot(show_label=False, elem_id=PLOT_IDS.get(name, f"{name}-plot"))

                plots("steps")
                with gr.Row():
                    split = gr.Radio(["eval", "seen"], value="eval", label="Evaluation split", scale=1,
                                     elem_id="split")
                    passk_steps = gr.CheckboxGroup([], value=[], label="Pass@k at steps (none = automatic)", scale=3,
                                                   elem_id="passk-steps")
                plots("evals")
                color = gr.Radio([("effective number of modes", "eff_modes"), ("collapse index", "collapse_index")],
                                 value="eff_modes", label="Heatmap colour", elem_id="heatmap-color")
                plots("heatmap")
                clicked = gr.Textbox(visible="hidden", elem_id="clicked-problem")
                gr.Markdown("#### Problem drill-down — click a row of the heatmap, or pick a problem")
                with gr.Row():
                    problem = gr.Dropdown(choices=[], value=None, label="Problem", allow_custom_value=True, scale=1,
                                          elem_id="problem-select")
                    comp["summary"] = gr.Markdown("", elem_id="problem-summary")
                with gr.Row():
                    comp["modes"] = gr.Plot(show_label=False, elem_id="modes-plot")
                    comp["bank"] = gr.Plot(show_label=False, elem_id="bank-plot")
                comp["samples"] = gr.Dataframe(headers=SAMPLE_COLUMNS, interactive=False, wrap=True,
                                               label="Sample completions (base model and the last evaluation points)",
                                               elem_id="samples-table", max_height=300)
                plots("diagnostics")
                comp["events"], comp["commands"] = events_df, commands_df

            # ------------------------------------------------------------------ All metrics
            with gr.Tab("All metrics", id="metrics", elem_id="tab-metrics") as tab_metrics:
                with gr.Row():
                    m_query = gr.Textbox(label="Search metrics", placeholder="e.g. grad_norm, pass@, time/",
                                         scale=3, elem_id="metrics-search")
                    m_groups = gr.CheckboxGroup([g for g in metrics_view.GROUPS] + ["other"], value=[],
                                                label="Groups (none = all)", scale=4, elem_id="metrics-groups")
                with gr.Row():
                    m_smooth = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="Smoothing (EMA weight; raw drawn faint)",
                                         scale=3, elem_id="metrics-smoothing")
                    m_log = gr.Checkbox(value=False, label="log y", scale=1, elem_id="metrics-log")
                    m_x = gr.Radio([(v, k) for k, v in metrics_view.X_AXES.items()], value="step", label="x axis",
                                   scale=3, elem_id="metrics-x")
                plots("metrics")

            # ------------------------------------------------------------------ Compare
            with gr.Tab("Compare", id="compare", elem_id="tab-compare") as tab_compare:
                gr.Markdown("### Experiments (strategies × seeds, from `workbench sweep`)")
                initial_exps = compare.experiment_choices(ctl.store)
                with gr.Row():
                    x_select = gr.Dropdown(choices=initial_exps, value=initial_exps[0] if initial_exps else None,
                                           label="Experiment", scale=3, elem_id="experiment-select")
                    x_baseline = gr.Dropdown(choices=[], value=None, label="Baseline (effects: cell − baseline)",
                                             scale=2, elem_id="experiment-baseline")
                    x_k = gr.Number(value=8, precision=0, minimum=1, label="k of pass@k", scale=0, min_width=90,
                                    elem_id="experiment-k")
                    b_x = gr.Button("Refresh", scale=0, elem_id="btn-experiment")
                x_summary = gr.Markdown("", elem_id="experiment-summary")
                with gr.Row():
                    x_fig1 = gr.Plot(show_label=False, elem_id="experiment-pass1")
                    x_fig2 = gr.Plot(show_label=False, elem_id="experiment-passk")
                with gr.Row():
                    x_fig3 = gr.Plot(show_label=False, elem_id="experiment-collapse")
                    x_fig4 = gr.Plot(show_label=False, elem_id="experiment-entropy")
                x_values = gr.Dataframe(interactive=False, wrap=True, label="Final figures: mean [95% CI] (n seeds)",
                                        elem_id="experiment-values")
                x_effects = gr.Dataframe(interactive=False, wrap=True,
                                         label="Effects against the baseline, paired by seed: mean [95% CI] (n)",
                                         elem_id="experiment-effects")
                gr.Markdown("### Runs overlaid")
                with gr.Row():
                    cmp_select = gr.Dropdown(choices=initial_runs, value=initial_runs[:2], multiselect=True,
                                             label="Runs to overlay", scale=4, elem_id="compare-select")
                    b_cmp = gr.Button("Refresh", scale=0, elem_id="btn-compare")
                with gr.Row():
                    c_entropy = gr.Plot(show_label=False, elem_id="compare-entropy")
                    c_pass1 = gr.Plot(show_label=False, elem_id="compare-pass1")
                with gr.Row():
                    c_passk = gr.Plot(show_label=False, elem_id="compare-passk")
                    c_boundary = gr.Plot(show_label=False, elem_id="compare-boundary")
                c_protocols = gr.Dataframe(headers=compare.PROTOCOL_COLUMNS, interactive=False, wrap=True,
                                           label="Evaluation protocol of each run (figures of different protocols "
                                                 "are not comparable)", elem_id="compare-protocols")
                with gr.Row():
                    c_metric = gr.Dropdown(choices=[], value=None, label="Metric", scale=3, elem_id="compare-metric")
                    c_smooth = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="Smoothing (EMA weight)", scale=2,
                                         elem_id="compare-smoothing")
                c_metric_fig = gr.Plot(show_label=False, elem_id="compare-metric-plot")

        tab_objs = {"runs": tab_runs, "live": tab_live, "metrics": tab_metrics, "compare": tab_compare}
        active_tab = gr.State("live")
        timer = gr.Timer(poll_seconds)
        runs_timer = gr.Timer(RUNS_POLL_SECONDS)
        runs_token = gr.State(None)

        # ------------------------------------------------------------------ live refresh
        panel_outputs = live.outputs()          # (panel, component) in registry order
        live_outputs = [status_md, *(comp[c] for _, c in panel_outputs), passk_steps, problem, seen]

        def poll(run_id, seen_keys, steps, color_mode, split_name, problem_id, tab, query, groups, smooth, log_y,
                 x_axis, force=False):
            metrics = (query or "", tuple(groups or ()), float(smooth or 0.0), bool(log_y), x_axis or "step")
            opts = live.Options(tuple(sorted(int(s) for s in steps or [])), color_mode or "eff_modes",
                                split_name or "eval", problem_id or None, tab or "live", metrics)
            res = ctl.poll(run_id, seen_keys, opts, force=force)
            changed = res["changed"]
            out: list[Any] = [res["status"] if res["status"] is not None else gr.skip()]
            for name, c in panel_outputs:
                value = changed.get(name, gr.skip())
                out.append(value[c] if live.PANELS[name].outputs and name in changed else value)
            out.append(gr.update(choices=res["passk_steps"]) if res["passk_steps"] is not None else gr.skip())
            out.append(gr.update(choices=res["problems"]) if res["problems"] is not None else gr.skip())
            out.append(res["seen"])
            return out

        poll_inputs = [run_select, seen, passk_steps, color, split, problem, active_tab, m_query, m_groups, m_smooth,
                       m_log, m_x]
        timer.tick(poll, poll_inputs, live_outputs, show_progress="hidden", queue=True, api_visibility="private")
        for control in (passk_steps, color, split, problem, active_tab, m_groups, m_smooth, m_log, m_x):
            control.change(poll, poll_inputs, live_outputs, show_progress="hidden", api_visibility="private")
        m_query.change(poll, poll_inputs, live_outputs, show_progress="hidden", api_visibility="private",
                       trigger_mode="always_last")
        run_select.change(lambda *a: poll(*a, force=True), poll_inputs, live_outputs, show_progress="hidden",
                          api_visibility="private")
        demo.load(lambda *a: poll(*a, force=True), poll_inputs, live_outputs, show_progress="hidden",
                  api_visibility="private")

        # ------------------------------------------------------------------ the page's URL
        # ?run=ID&tab=NAME: a reload (or a shared link) shows the same run and tab; without
        # a run in the URL the most recent run is selected.
        def from_url(request: gr.Request):
            q = dict(request.query_params) if request is not None else {}
            ids = ctl.run_ids()
            rid = q.get("run") if q.get("run") in ids else (ids[0] if ids else None)
            tab = q.get("tab")
            if tab not in TAB_IDS:
                return gr.update(choices=ids, value=rid), gr.skip(), gr.skip()
            return gr.update(choices=ids, value=rid), gr.Tabs(selected=tab), tab

        demo.load(from_url, None, [run_select, tabs, active_tab], show_progress="hidden",
                  api_visibility="private").then(
            None, None, None, js="() => { window.wbUrlRead = true; }")
        run_select.change(None, run_select, None, js=url_js("run"), api_visibility="private")
        for tab_id, tab in tab_objs.items():
            tab.select(None, None, None, js=url_js("tab", tab_id), api_visibility="private")
            tab.select(lambda t=tab_id: t, None, active_tab, show_progress="hidden", api_visibility="private")

        def on_click(value):
            pid = (value or "").split("|", 1)[0]
            return gr.update(value=pid) if pid else gr.skip()

        clicked.change(on_click, clicked, problem, show_progress="hidden", api_visibility="private")

        # ------------------------------------------------------------------ runs list
        def refresh_runs(token, query):
            new = (ctl.runs_token(), query)
            if new == token:
                return gr.skip(), gr.skip(), gr.skip(), token
            ids = ctl.run_ids()
            return (ctl.filtered_rows(query), gr.update(choices=ids), gr.update(choices=ids), new)

        runs_timer.tick(refresh_runs, [runs_token, runs_filter], [runs_df, run_select, cmp_select, runs_token],
                        show_progress="hidden", api_visibility="private")
        runs_filter.change(refresh_runs, [runs_token, runs_filter], [runs_df, run_select, cmp_select, runs_token],
                           show_progress="hidden", api_visibility="private", trigger_mode="always_last")

        def export(kind):
            def fn(run_id):
                try:
                    return str(ctl.export(run_id, kind))
                except forms.FormError as exc:
                    _warn(exc)
                    return None
            return fn

        run_select.change(ctl.run_meta, run_select, [h_name, h_notes, h_tags], show_progress="hidden",
                          api_visibility="private")

        def on_save(run_id, name, notes, tags):
            try:
                return ctl.annotate(run_id, name, notes, tags), ctl.runs_rows()
            except forms.FormError as exc:
                return _warn(exc), gr.skip()

        def on_delete(run_id, confirm):
            try:
                msg = ctl.delete(run_id, confirm)
            except forms.FormError as exc:
                return _warn(exc), gr.skip(), gr.skip(), gr.skip()
            ids = ctl.run_ids()
            return msg, ctl.runs_rows(), gr.update(choices=ids, value=ids[0] if ids else None), ""

        b_save.click(on_save, [run_select, h_name, h_notes, h_tags], [h_msg, runs_df], api_visibility="private",
                     show_progress="hidden")
        b_delete.click(on_delete, [run_select, h_confirm], [h_msg, runs_df, run_select, h_confirm],
                       api_visibility="private", show_progress="hidden")

        for btn, kind in ((b_csv, "csv"), (b_parquet, "parquet"), (b_evals, "evaluations")):
            btn.click(export(kind), [run_select], [export_file], api_visibility="private", show_progress="minimal")

        def pick_row(evt: gr.SelectData, rows):
            try:
                row = evt.row_value if evt.row_value else rows[evt.index[0]]
                return row[0]
            except (TypeError, IndexError, KeyError):
                return gr.skip()

        runs_df.select(pick_row, [runs_df], [run_select], api_visibility="private", show_progress="hidden")

        # ------------------------------------------------------------------ forms
        f_strategy.change(lambda s: (forms.strategy_doc(s), forms.param_rows(s)), f_strategy, [f_doc, f_params],
                          api_visibility="private")
        s_strategy.change(lambda s: (forms.strategy_doc(s), forms.param_rows(s)), s_strategy, [s_doc, s_params],
                          api_visibility="private")

        def on_start(model, task, strategy, params, steps, G, B, every, n, lr, maxp, seen_p, seed, name, extra):
            form = {"model": model, "task": task, "strategy": strategy, "params": params, "steps": steps,
                    "group_size": G, "prompts_per_step": B, "eval_every": every, "eval_n": n, "lr": lr,
                    "eval_max_problems": maxp, "eval_seen_problems": seen_p, "seed": seed, "name": name,
                    "extra": extra}
            try:
                rid = ctl.start_run(form)
            except forms.FormError as exc:
                return _warn(exc), gr.skip(), gr.skip(), gr.skip()
            gr.Info(f"started {rid}")
            msg = (f"Started **{rid}** (log: `{ctl.manager.logs / (rid + '.log')}`). It loads the model and evaluates "
                   "the base model first; the live view follows it.")
            return msg, gr.update(choices=ctl.run_ids(), value=rid), gr.Tabs(selected="live"), "live"

        b_start.click(on_start, [f_model, f_task, f_strategy, f_params, f_steps, f_G, f_B, f_every, f_n, f_lr, f_maxp,
                                 f_seen, f_seed, f_name, f_extra], [start_msg, run_select, tabs, active_tab],
                      api_visibility="private")

        def command(kind):
            def fn(run_id, n):
                try:
                    _, msg = ctl.send(run_id, kind, n)
                except forms.FormError as exc:
                    return _warn(exc)
                return msg
            return fn

        for btn, kind in ((b_pause, "pause"), (b_resume, "resume"), (b_step, "step"), (b_eval, "evaluate"),
                          (b_ckpt, "checkpoint"), (b_stop, "stop")):
            # no progress overlay: it flickered over the status line at every click
            btn.click(command(kind), [run_select, step_n], [control_msg], api_visibility="private",
                      show_progress="hidden")

        def ask_switch(run_id, strategy, rows, text, when, at):
            """Validate, then ask for confirmation (nothing is sent yet)."""
            try:
                question = ctl.switch_question(run_id, strategy, rows, text, at if when == "at" else None)
            except forms.FormError as exc:
                return _warn(exc), gr.update(visible=False), ""
            return "", gr.update(visible=True), question

        def do_switch(run_id, strategy, rows, text, when, at):
            try:
                _, msg = ctl.switch(run_id, strategy, rows, text, at if when == "at" else None)
            except forms.FormError as exc:
                return _warn(exc), gr.update(visible=False)
            return msg, gr.update(visible=False)

        switch_inputs = [run_select, s_strategy, s_params, s_text, s_when, s_at]
        b_switch.click(ask_switch, switch_inputs, [switch_msg, s_confirm, s_question], api_visibility="private",
                       show_progress="hidden")
        b_confirm.click(do_switch, switch_inputs, [switch_msg, s_confirm], api_visibility="private",
                        show_progress="hidden")
        b_cancel.click(lambda: ("switch cancelled", gr.update(visible=False)), None, [switch_msg, s_confirm],
                       api_visibility="private")

        # ------------------------------------------------------------------ compare
        def on_compare(run_ids):
            runs = list(run_ids or [])
            figs = compare.compare_figures(ctl.store, runs)
            choices = compare.metric_choices(ctl.store, runs)
            return (figs["entropy"], figs["pass1"], figs["passk"], figs["boundary"],
                    compare.protocol_rows(ctl.store, runs), gr.update(choices=choices))

        def on_metric(run_ids, key, smoothing):
            return compare.metric_overlay(ctl.store, list(run_ids or []), key, float(smoothing or 0.0))

        for control in (c_metric, c_smooth):
            control.change(on_metric, [cmp_select, c_metric, c_smooth], c_metric_fig, api_visibility="private")
        cmp_outputs = [c_entropy, c_pass1, c_passk, c_boundary, c_protocols, c_metric]
        cmp_select.change(on_compare, cmp_select, cmp_outputs, api_visibility="private")
        b_cmp.click(on_compare, cmp_select, cmp_outputs, api_visibility="private")
        demo.load(on_compare, cmp_select, cmp_outputs, api_visibility="private")

        def on_experiment(exp_id, baseline, k):
            cells = compare.experiment_cells(ctl.store, exp_id)
            view = compare.experiment_view(ctl.store, exp_id, int(k or 8), baseline if baseline in cells else None)
            figs = list(view["figures"].values())
            (vh, vr), (eh, er) = view["values"], view["effects"]
            return (gr.update(choices=cells, value=view["baseline"]), view["summary"], *figs,
                    gr.update(value=vr, headers=vh), gr.update(value=er, headers=eh))

        x_outputs = [x_baseline, x_summary, x_fig1, x_fig2, x_fig3, x_fig4, x_values, x_effects]
        x_inputs = [x_select, x_baseline, x_k]
        x_select.change(lambda e, b, k: on_experiment(e, None, k), x_inputs, x_outputs, api_visibility="private")
        x_baseline.input(on_experiment, x_inputs, x_outputs, api_visibility="private")
        x_k.submit(on_experiment, x_inputs, x_outputs, api_visibility="private")
        b_x.click(lambda e, b, k: (gr.update(choices=compare.experiment_choices(ctl.store)),
                                   *on_experiment(e, b, k)), x_inputs, [x_select, *x_outputs],
                  api_visibility="private")
        demo.load(on_experiment, x_inputs, x_outputs, api_visibility="private")

        # ------------------------------------------------------------------ API (gradio_client)
        _api(ctl)

    demo.controller = ctl  # type: ignore[attr-defined]
    return demo


def _api(ctl: Controller) -> None:
    """Endpoints a script or test drives the dashboard through (errors come back as messages)."""

    D = forms.DEFAULTS

    def start_run(model: str = "", task: str = "two_primes", strategy: str = "grpo", params: str = "",
                  steps: int = D["steps"], group_size: int = D["group_size"],
                  prompts_per_step: int = D["prompts_per_step"], eval_every: int = D["eval_every"],
                  eval_n: int = D["eval_n"], extra: str = "") -> str:
        """Start `workbench train` in a subprocess; returns the new run id. `params`: 'piece.param=value' pairs
        or a JSON object; `extra`: other config fields as KEY=VALUE lines (e.g. eval.max_problems=8)."""
        form = {"model": model or forms.default_model(), "task": task, "strategy": strategy, "params_text": params,
                "steps": steps, "group_size": group_size, "prompts_per_step": prompts_per_step,
                "eval_every": eval_every, "eval_n": eval_n, "eval_max_problems": D["eval_max_problems"],
                "eval_seen_problems": D["eval_seen_problems"], "extra": extra}
        return _or_error(ctl.start_run, form)

    def send_command(run_id: str, kind: str, n: int = 1) -> str:
        """Send pause | resume | step (n steps, then pause) | stop | evaluate | checkpoint; returns a message."""
        return _or_error(ctl.send, run_id, kind, n)[1]

    def switch_strategy(run_id: str, strategy: str, params: str = "", at_step: int = -1) -> str:
        """Switch the run's strategy at its next step boundary, or after step `at_step` (>= 0); `params` as in
        start_run. Returns a message."""
        return _or_error(ctl.switch, run_id, strategy, None, params, None if at_step is None or at_step < 0
                         else at_step)[1]

    def list_events(run_id: str, kind: str = "") -> str:
        """The run's events as a JSON list of {id, step, kind, payload, created_at}."""
        return json.dumps(_or_error(ctl.events, run_id, kind or None))

    def list_commands(run_id: str) -> str:
        """The run's commands as a JSON list of {id, kind, payload, status, step, message, ...}."""
        return json.dumps(_or_error(ctl.commands, run_id))

    def run_state(run_id: str) -> str:
        """JSON {run_id, status, last_step, strategy, process}."""
        return json.dumps(_or_error(ctl.run_state, run_id))

    def list_runs() -> str:
        """JSON list of the runs table's rows (columns as in the Runs tab)."""
        return json.dumps([dict(zip(tables.RUN_COLUMNS, r)) for r in ctl.runs_rows()])

    for fn in (start_run, send_command, switch_strategy, list_events, list_commands, run_state, list_runs):
        gr.api(fn, api_name=fn.__name__)


def _or_error(fn, *args):
    try:
        return fn(*args)
    except forms.FormError as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
           block: bool = True, quiet: bool = False, auth: tuple[str, str] | None = None,
           allow_hosts: list[str] | tuple[str, ...] = ()) -> gr.Blocks:
    """Launch with the dashboard's CSS and JS (Gradio 6 takes them at launch), behind the
    Host/Origin guard (``ui.security.HostGuard``: only the bound address, loopback names and
    ``allow_hosts``; no uploads), with ``auth`` credentials when given."""
    from starlette.middleware import Middleware

    hosts = allowed_hosts(host, allow_hosts)
    guard = Middleware(HostGuard, hosts=hosts, suffixes=(".gradio.live",) if share else ())
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=quiet,
                css=CSS, js=JS, show_error=True, footer_links=["api"], auth=auth, max_file_size=1,
                app_kwargs={"middleware": [guard]})
    return demo


def serve(workspace: str | Path = "runs", host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          auth: str | None = None, allow_models: list[str] | tuple[str, ...] = (),
          allow_hosts: list[str] | tuple[str, ...] = ()) -> None:
    """``workbench dashboard``: serve on ``host:port`` (this machine only unless told otherwise).

    Reachable from elsewhere (``host`` not loopback, or ``share``) it needs ``auth``
    ("USER:PASS" or "generate"; see ``ui.security.exposure_auth``) and refuses to start
    without; a generated password is printed once."""
    creds = exposure_auth(host, share, auth)      # before anything is built or bound
    demo = build_app(workspace, allow_models=allow_models)
    ctl: Controller = demo.controller  # type: ignore[attr-defined]
    atexit.register(ctl.manager.shutdown)
    launch(demo, host=host, port=port, share=share, block=False, quiet=True, auth=creds, allow_hosts=allow_hosts)
    print(f"RLVR Collapse Workbench dashboard: {demo.local_url} (run store: {ctl.workspace})", flush=True)
    if creds is not None and auth == "generate":
        print(f"sign in as user {creds[0]!r} with the password {creds[1]} (shown once)", flush=True)
    elif creds is not None:
        print(f"sign in as user {creds[0]!r}", flush=True)
    if share:
        print(f"public share link: {demo.share_url}", flush=True)
    print("Ctrl+C stops the dashboard and the runs it started.", flush=True)
    demo.block_thread()
