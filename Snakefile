# Instance-level image retrieval: from folders of photos to ranked results and Revisited Oxford/Paris metrics.
#   snakemake --cores all results/demo_global.json
#   snakemake --cores all results/{dataset}_{method}.json --config data_root=DIR
import yaml
from snakemake.exceptions import IncompleteCheckpointException, WorkflowError
from snakemake.logging import logger
from snakemake.utils import min_version, validate

min_version("9.0")

# config.yaml not valid YAML (an edit of the file the README says to copy): Snakemake's own message named neither the
# file nor the line, and pointed at this Snakefile
try:
    with open(os.path.join(workflow.basedir, "config/config.yaml"), encoding="utf-8") as _f:
        yaml.safe_load(_f)
except yaml.YAMLError as _e:
    sys.exit(f"config/config.yaml is not valid YAML: {_e}")
except UnicodeDecodeError as _e:  # a comment saved in Latin-1: a traceback from inside yaml (helper-101)
    sys.exit(f"config/config.yaml is not UTF-8 text (byte {_e.start}: {_e.reason}); save it as UTF-8")


configfile: os.path.join(workflow.basedir, "config/config.yaml")


sys.path.insert(0, os.path.join(workflow.basedir, "workflow_scripts"))
from retrieval.config_errors import (
    apply_moved_keys,
    cap_descriptor_counts,
    coerce_scalars,
    describe_errors,
    duplicate_keys,
    in_default_form,
    non_finite,
    name_holders,
    not_named_by,
    preset_not_applied,
    problems_text,
    refused_keys,
    with_defaults,
)
from retrieval.plan import Plan, PlanError, problems_beside_schema

# a key given twice in config/config.yaml or a --configfile: YAML keeps the last, dropping the first without a word
# (said below, with the schema's problems, so that one run names both: a misspelt key was named only after the
# duplicate was fixed)
_twice = duplicate_keys([os.path.join(workflow.basedir, "config/config.yaml")] + list(workflow.overwrite_configfiles))

# --config KEY=false arrives as text: read boolean keys' text as YAML would; 5.0 for an integer key is 5; every
# section's keys in config.yaml's order and its numbers in config.yaml's type (20 for 20.0), whatever the
# --configfile files wrote (else restating a default moved versions or re-ran section-valued params)
_read = coerce_scalars(config, os.path.join(workflow.basedir, "config/schema.yaml"))
with open(os.path.join(workflow.basedir, "config/config.yaml")) as _f:
    _defaults = yaml.safe_load(_f)
_read = in_default_form(_read, _defaults)
config.clear()
config.update(_read)
# data_root: DIR as a shell would read it, absolute and normal (dataset_dirs entries are made so where they are
# read): the download rules' outputs are under it, and the datasets' folders are asked for absolute
if isinstance(config.get("data_root"), str) and config["data_root"]:
    config["data_root"] = os.path.abspath(os.path.expanduser(config["data_root"]))


# a configuration problem is said in its own lines, exit status 1, before any job (sys.exit with the text; a
# WorkflowError raised here came framed by Snakemake's "WorkflowError in file Snakefile, line 54:" and a stray
# "File ... line 54" after it, which a new user's trial read as part of the problem). Every kind in one run: a
# duplicate key, the schema's problems (or NaN and infinities, which the schema lets through), a key given by both its
# names, and the checks the schema cannot make (each kind stopped the run alone, the others named only once it was
# fixed: helper-95's trial)
_said = [_twice] if _twice else []
try:
    validate(config, os.path.join(workflow.basedir, "config/schema.yaml"))
    _schema_failed = False
except WorkflowError:
    _schema_failed = True
if _schema_failed or non_finite(config):
    # Snakemake prints the whole schema and configuration after the first problem: say every problem in a line
    _text = describe_errors(
        config,
        os.path.join(workflow.basedir, "config/schema.yaml"),
        workflow.overwrite_configfiles,
        dict(workflow.config_settings.config),
    )
    if _schema_failed and not _text and not _said:
        validate(config, os.path.join(workflow.basedir, "config/schema.yaml"))  # Snakemake's own words
    _said += [_text] if _text else []
# a key given by its older name (ames.bootstrap) is read as its current one (evaluate.bootstrap), with a warning
_moved, _both = [], []
try:
    _moved = apply_moved_keys(config, _defaults, workflow.overwrite_configfiles)
except ValueError as _e:
    _both = [str(_e)]
except (TypeError, AttributeError, KeyError):  # a section of the wrong type, which the schema's lines name
    if not _said:
        raise
if _said or _both:
    # the checks the schema cannot make, said in the same run where the refused values let them run; a key is
    # refused once (the schema's line, not also "gives both": helper-96's review)
    _more = problems_text(
        not_named_by(
            _both
            + name_holders(
                # the refused values set back to their defaults, so the checks run on the others
                problems_beside_schema(with_defaults(config, refused_keys("\n".join(_said)), _defaults)),
                config,
                workflow.overwrite_configfiles,
                dict(workflow.config_settings.config),
            ),
            "\n".join(_said),
        )
    )
    sys.exit("\n".join(_said + ([_more] if _more else [])))
# the configuration's problems the schema cannot see, said while the Snakefile is read, all of them, in their own
# lines and exit status 1 as the schema's are (a demo split in dataset_dirs was ignored where the demo's results were
# up to date; a ResNet without weights failed every extraction job; min_chunk_images above max_chunk_images was
# overridden without a word; an unsupervised_fit naming no dataset, a shortlist or local-feature source without what
# it reads, came in an InputFunctionException); before the warnings of a run that goes on (they came before the
# refusal, helper-146)
try:
    _problems = Plan(config).config_problems()
except PlanError as _e:  # a value the checks could not read past: said as they are
    _problems = [str(_e)]
if _problems:
    _overrides = dict(workflow.config_settings.config)  # --config alone: its values name no file
    sys.exit(problems_text(name_holders(_problems, config, workflow.overwrite_configfiles, _overrides)))
# --config preset=tiny labels the run without applying config/presets/tiny.yaml (said only where the run goes on)
_unapplied = preset_not_applied(
    config, workflow.overwrite_configfiles, os.path.join(workflow.basedir, "config/presets")
)
if _unapplied:
    logger.warning(_unapplied)
for _line in _moved:
    logger.warning(_line)
# sv.q_desc and the like above what extraction keeps per image read what it keeps: said, and versioned as such
for _line in cap_descriptor_counts(config, _defaults):
    logger.warning(_line)


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/download.smk"
include: "rules/lists.smk"
include: "rules/extract.smk"
include: "rules/merge.smk"
include: "rules/codebook.smk"
include: "rules/aggregate.smk"
include: "rules/whiten.smk"
include: "rules/lw.smk"
include: "rules/knn.smk"
include: "rules/asmk.smk"
include: "rules/evaluate.smk"
include: "rules/qe.smk"
include: "rules/superglobal.smk"
include: "rules/sv.smk"
include: "rules/ames.smk"
include: "rules/ssp.smk"
include: "rules/benchmark.smk"
include: "rules/report.smk"
include: "rules/compare.smk"
include: "rules/export.smk"
include: "rules/search.smk"


rule all:
    default_target: True
    input:
        "results/demo_global.json",


# an input function's error Snakemake drops (where files it needs are on disk: "Nothing to be done", exit status 0;
# snakemake#3953) is said when the run ends (retrieval/input_errors.py)
input_errors.say_input_errors(workflow.rules, logger, passed=(IncompleteCheckpointException,))


# a published result older than a file it names (re-computed in place for another target) is named as stale
onsuccess:
    warn_stale_published()


onerror:
    warn_stale_published()
