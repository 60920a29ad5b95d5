"""Tests for the typed instruction layer: builder/frontend/instructions.py and its helpers.

Dockerfile text goes through the real parser, so each case reads as a user
would write it.  Error messages are BuildKit's (instructions/parse.go,
bflag.go), because users search for them.
"""

from __future__ import annotations

import dataclasses

import pytest

from builder.errors import (
    BadFlag,
    DockerfileError,
    ExpansionError,
    ParseError,
    SourceLocation,
    UnknownInstruction,
)
from builder.frontend import instructions
from builder.frontend.commands import (
    Add,
    Arg,
    ArgDefinition,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    SourceContent,
    StopSignal,
    User,
    Volume,
    Workdir,
)
from builder.frontend.expansion import (
    expand_from,
    expand_instruction,
    expand_instruction_with_matches,
)
from builder.frontend.gonumbers import parse_duration, parse_int32
from builder.frontend.instructions import parse_instruction, parse_instructions
from builder.frontend.parser import parse_dockerfile
from builder.frontend.suggest import closest, levenshtein

SECOND = 1_000_000_000


def parse(text: str) -> tuple[Instruction, ...]:
    return parse_instructions(parse_dockerfile(text), "Dockerfile")


def last(text: str) -> Instruction:
    """The last instruction of ``FROM scratch`` followed by text."""
    return parse("FROM scratch\n" + text)[-1]


def error_of(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as caught:
        parse(text)
    return caught.value


# --- each instruction, parsed ----------------------------------------------------------


def test_from_reads_base_platform_and_lower_cased_stage_name() -> None:
    (stage,) = parse("FROM --platform=$BUILDPLATFORM golang:1.22 As Build\n")
    assert isinstance(stage, From)
    assert (stage.base_name, stage.stage_name, stage.platform) == (
        "golang:1.22",
        "build",
        "$BUILDPLATFORM",
    )
    assert stage.location == SourceLocation("Dockerfile", 1, 1)
    assert stage.original == "FROM --platform=$BUILDPLATFORM golang:1.22 As Build"


def test_from_without_name_has_empty_stage_name() -> None:
    (stage,) = parse("FROM alpine\n")
    assert isinstance(stage, From)
    assert (stage.stage_name, stage.platform) == ("", "")


def test_run_shell_form_prepends_shell_and_keeps_flags() -> None:
    run = last(
        "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok"
        " --network=none --security=insecure make all\n"
    )
    assert isinstance(run, Run)
    assert run.command == ("make all",)
    assert run.prepends_shell
    assert run.mounts == ("type=cache,target=/root/.cache", "type=secret,id=tok")
    assert (run.network, run.security) == ("none", "insecure")
    assert run.flags_used == ("mount", "network", "security")


def test_run_json_form_has_words_and_defaults() -> None:
    run = last('RUN ["echo", "$HOME"]\n')
    assert isinstance(run, Run)
    assert run.command == ("echo", "$HOME")
    assert not run.prepends_shell
    assert (run.network, run.security, run.mounts, run.flags_used) == (
        "default",
        "sandbox",
        (),
        (),
    )


def test_run_keeps_heredocs() -> None:
    run = last("RUN <<EOF\necho hi\nEOF\n")
    assert isinstance(run, Run)
    assert [(doc.name, doc.content) for doc in run.heredocs] == [("EOF", "echo hi\n")]
    assert run.location == SourceLocation("Dockerfile", 2, 4)


def test_cmd_and_entrypoint_in_both_forms() -> None:
    cmd, entrypoint = parse('FROM scratch\nCMD echo "hi"\nENTRYPOINT ["/bin/app", "-v"]\n')[1:]
    assert isinstance(cmd, Cmd)
    assert (cmd.command, cmd.prepends_shell) == (('echo "hi"',), True)
    assert isinstance(entrypoint, Entrypoint)
    assert (entrypoint.command, entrypoint.prepends_shell) == (("/bin/app", "-v"), False)


def test_shell_json_form() -> None:
    shell = last('SHELL ["/bin/bash", "-eu", "-c"]\n')
    assert isinstance(shell, Shell)
    assert shell.shell == ("/bin/bash", "-eu", "-c")


def test_env_keeps_pairs_in_order_with_quotes_until_expansion() -> None:
    env = last('ENV b=2 a="x y" c=3\n')
    assert isinstance(env, Env)
    assert env.pairs == (KeyValue("b", "2"), KeyValue("a", '"x y"'), KeyValue("c", "3"))


def test_env_legacy_form_takes_the_rest_of_the_line() -> None:
    env = last("ENV PATH /usr/local/bin:$PATH extra\n")
    assert isinstance(env, Env)
    assert env.pairs == (KeyValue("PATH", "/usr/local/bin:$PATH extra", no_delimiter=True),)


def test_label_pairs() -> None:
    label = last('LABEL org.opencontainers.image.title="my app" version=1\n')
    assert isinstance(label, Label)
    assert [(pair.key, pair.value) for pair in label.pairs] == [
        ("org.opencontainers.image.title", '"my app"'),
        ("version", "1"),
    ]


def test_arg_takes_several_names_with_optional_defaults() -> None:
    arg = last("ARG A B=2 C=\n")
    assert isinstance(arg, Arg)
    assert arg.args == (ArgDefinition("A", None), ArgDefinition("B", "2"), ArgDefinition("C", ""))


def test_arg_before_first_from_is_allowed() -> None:
    arg, stage = parse("ARG VERSION=3.19\nFROM alpine:$VERSION\n")
    assert isinstance(arg, Arg) and isinstance(stage, From)


def test_expose_sorts_ports_as_buildkit_does() -> None:
    expose = last("EXPOSE 8080 443/tcp 53/udp\n")
    assert isinstance(expose, Expose)
    assert expose.ports == ("443/tcp", "53/udp", "8080")


def test_volume_both_forms() -> None:
    plain, json_form = parse('FROM scratch\nVOLUME /data /logs\nVOLUME ["/a", " /b "]\n')[1:]
    assert isinstance(plain, Volume) and isinstance(json_form, Volume)
    assert plain.volumes == ("/data", "/logs")
    assert json_form.volumes == ("/a", "/b")


def test_user_workdir_stopsignal_maintainer() -> None:
    user, workdir, signal, maintainer = parse(
        "FROM scratch\nUSER app:app\nWORKDIR /srv/my app\nSTOPSIGNAL SIGTERM\nMAINTAINER Jo <jo@x>\n"
    )[1:]
    assert isinstance(user, User) and user.user == "app:app"
    assert isinstance(workdir, Workdir) and workdir.path == "/srv/my app"
    assert isinstance(signal, StopSignal) and signal.signal == "SIGTERM"
    assert isinstance(maintainer, Maintainer) and maintainer.maintainer == "Jo <jo@x>"


def test_healthcheck_none() -> None:
    check = last("HEALTHCHECK NONE\n")
    assert isinstance(check, Healthcheck)
    assert check.test == ("NONE",)
    assert check.is_disabled


def test_healthcheck_shell_form_with_durations_and_retries() -> None:
    check = last(
        "HEALTHCHECK --interval=1m30s --timeout=.5s --start-period=2s --start-interval=100ms"
        " --retries=3 CMD curl -f http://localhost/ || exit 1\n"
    )
    assert isinstance(check, Healthcheck)
    assert check.test == ("CMD-SHELL", "curl -f http://localhost/ || exit 1")
    assert check.interval_ns == 90 * SECOND
    assert check.timeout_ns == SECOND // 2
    assert check.start_period_ns == 2 * SECOND
    assert check.start_interval_ns == SECOND // 10
    assert check.retries == 3


def test_healthcheck_json_form_and_zero_interval() -> None:
    check = last('HEALTHCHECK --interval=0s CMD ["/bin/check", "--fast"]\n')
    assert isinstance(check, Healthcheck)
    assert check.test == ("CMD", "/bin/check", "--fast")
    assert (check.interval_ns, check.retries) == (0, 0)


def test_onbuild_keeps_expression_and_parses_trigger() -> None:
    onbuild = last("ONBUILD RUN --mount=type=cache,target=/c make\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.expression == "RUN --mount=type=cache,target=/c make"
    assert isinstance(onbuild.trigger, Run)
    assert onbuild.trigger.mounts == ("type=cache,target=/c",)
    assert onbuild.trigger_error == ""


def test_onbuild_with_heredoc_carries_the_body() -> None:
    onbuild = last("ONBUILD COPY <<EOF /greeting\nhello\nEOF\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.expression == "COPY <<EOF /greeting\nhello\nEOF"
    assert isinstance(onbuild.trigger, Copy)
    assert onbuild.trigger.source_contents == (SourceContent("EOF", "hello\n", expand=True),)


def test_onbuild_with_unknown_trigger_is_accepted_as_buildkit_does() -> None:
    # BuildKit parses the trigger only when a child build runs it.
    onbuild = last("ONBUILD RUNN make\n")
    assert isinstance(onbuild, Onbuild)
    assert onbuild.trigger is None
    assert onbuild.trigger_error == "unknown instruction: RUNN (did you mean RUN?)"


def test_copy_reads_every_flag() -> None:
    copy = last(
        "COPY --from=builder --chown=1000:1000 --chmod=0644 --link --parents"
        " --exclude=*.tmp --exclude=.git a b /dst/\n"
    )
    assert isinstance(copy, Copy)
    assert copy.sources == ("a", "b")
    assert copy.destination == "/dst/"
    assert (copy.from_stage, copy.chown, copy.chmod) == ("builder", "1000:1000", "0644")
    assert copy.link and copy.parents
    assert copy.excludes == ("*.tmp", ".git")
    assert copy.source_contents == ()


def test_copy_json_form() -> None:
    copy = last('COPY ["my file", "/dst dir/"]\n')
    assert isinstance(copy, Copy)
    assert (copy.sources, copy.destination) == (("my file",), "/dst dir/")


def test_copy_heredoc_sources_chomped_and_quoted() -> None:
    copy = last('COPY <<-EOF <<"RAW" /etc/\n\tindented $X\n\tEOF\nkeep $X\nRAW\n')
    assert isinstance(copy, Copy)
    assert copy.sources == ()
    assert copy.source_contents == (
        SourceContent("EOF", "indented $X\n", expand=True),
        SourceContent("RAW", "keep $X\n", expand=False),
    )
    assert copy.location == SourceLocation("Dockerfile", 2, 6)


def test_add_reads_its_flags_and_leaves_unpack_unset() -> None:
    add = last(
        "ADD --checksum=sha256:abc --keep-git-dir=true --link=false --chmod=755"
        " https://example.com/x.tar.gz /opt/\n"
    )
    assert isinstance(add, Add)
    assert add.sources == ("https://example.com/x.tar.gz",)
    assert (add.checksum, add.chmod, add.keep_git_dir, add.link) == (
        "sha256:abc",
        "755",
        True,
        False,
    )
    assert add.unpack is None


@pytest.mark.parametrize(("flag", "expected"), [("--unpack", True), ("--unpack=False", False)])
def test_add_unpack_given(flag: str, expected: bool) -> None:
    add = last(f"ADD {flag} a.tar /x/\n")
    assert isinstance(add, Add)
    assert add.unpack is expected


# --- flags --------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "expected"), [("--link", True), ("--link=TRUE", True)])
def test_bool_flag_bare_or_true(flag: str, expected: bool) -> None:
    copy = last(f"COPY {flag} a b\n")
    assert isinstance(copy, Copy)
    assert copy.link is expected


def test_unknown_flag_is_named_with_a_suggestion() -> None:
    err = error_of("FROM scratch\nCOPY --lnk a b\n")
    assert isinstance(err, BadFlag)
    assert err.message == "unknown flag: --lnk"
    assert err.hint == "did you mean link?"
    assert err.location == SourceLocation("Dockerfile", 2, 2)
    assert err.source_lines == ("COPY --lnk a b",)


def test_unknown_flag_without_close_name_has_no_hint() -> None:
    err = error_of("FROM scratch\nMAINTAINER --boo joe@example.com\n")
    assert isinstance(err, BadFlag)
    assert (err.message, err.hint) == ("unknown flag: --boo", "")


def test_flag_on_instruction_without_flags_is_unknown() -> None:
    err = error_of("FROM scratch\nWORKDIR --from=x /a\n")
    assert isinstance(err, BadFlag)
    assert err.message == "unknown flag: --from"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("COPY --from=a --from=b x y", "duplicate flag specified: --from"),
        ("COPY --link --link x y", "duplicate flag specified: --link"),
        ("COPY --chown x y", "missing a value on flag: --chown"),
        ("COPY --link= x y", "missing a value on flag: --link"),
        ("COPY --link=maybe x y", "expecting boolean value for flag --link, not: maybe"),
        ("RUN --network=bridge true", 'invalid network mode "bridge"'),
        ("RUN --security=full true", 'security "full" is not valid'),
        ("RUN --mount true", "missing a value on flag: --mount"),
    ],
)
def test_bad_flag_values(line: str, message: str) -> None:
    err = error_of(f"FROM scratch\n{line}\n")
    assert isinstance(err, BadFlag)
    assert err.message == message


def test_repeatable_flags_keep_every_value() -> None:
    run = last("RUN --mount=type=tmpfs,target=/a --mount=type=tmpfs,target=/b true\n")
    assert isinstance(run, Run)
    assert run.mounts == ("type=tmpfs,target=/a", "type=tmpfs,target=/b")


def test_flags_buildkit_never_reads_are_ignored() -> None:
    signal, check, arg = parse(
        "FROM scratch\nSTOPSIGNAL --bogus SIGINT\nHEALTHCHECK --bogus NONE\nARG --bogus A\n"
    )[1:]
    assert isinstance(signal, StopSignal) and signal.signal == "SIGINT"
    assert isinstance(check, Healthcheck) and check.is_disabled
    assert isinstance(arg, Arg) and arg.args == (ArgDefinition("A", None),)


# --- argument counts and other refusals -----------------------------------------------

NO_DESTINATION = (
    "{} requires at least two arguments, but only one was provided."
    " Destination could not be determined"
)
BAD_STAGE_NAME = (
    "invalid name for build stage: {}, name can't start with a number or contain symbols"
)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("LABEL", "LABEL requires at least one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("ARG", "ARG requires at least one argument"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("USER", "USER requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("COPY onlyone", NO_DESTINATION.format("COPY")),
        ("ADD onlyone", NO_DESTINATION.format("ADD")),
        ("ARG =x", "ARG names can not be blank"),
        ("ENV =x", "ENV names can not be blank"),
        ('VOLUME [""]', "VOLUME specified can not be an empty string"),
        ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),
        ("SHELL []", "SHELL requires at least one argument"),
        ("HEALTHCHECK NONE now", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK PING x", 'Unknown type "PING" in HEALTHCHECK (try CMD)'),
        ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
        ("ONBUILD FROM scratch", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ],
)
def test_refused_lines(line: str, message: str) -> None:
    err = error_of(f"FROM scratch\n{line}\n")
    assert type(err) is ParseError
    assert err.message == message
    assert err.location is not None and err.location.start_line == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a b\n", "FROM requires either one or three arguments"),
        ("FROM a AS b c\n", "FROM requires either one or three arguments"),
        ("FROM\n", "FROM requires either one or three arguments"),
        ("FROM a AS 1st\n", BAD_STAGE_NAME.format('"1st"')),
        ("FROM a AS St@ge\n", BAD_STAGE_NAME.format('"St@ge"')),
    ],
)
def test_from_refusals(text: str, message: str) -> None:
    err = error_of(text)
    assert type(err) is ParseError
    assert err.message == message


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--interval=50ns", 'Interval "interval" cannot be less than 1ms'),
        ("--timeout=-1s", 'Interval "timeout" cannot be less than 1ms'),
        ("--start-period=soon", 'time: invalid duration "soon"'),
        ("--start-interval=5", 'time: missing unit in duration "5"'),
        ("--interval=5d", 'time: unknown unit "d" in duration "5d"'),
        ("--retries=-1", "--retries cannot be negative (-1)"),
        ("--retries=three", 'strconv.ParseInt: parsing "three": invalid syntax'),
        ("--retries=4294967296", 'strconv.ParseInt: parsing "4294967296": value out of range'),
    ],
)
def test_healthcheck_flag_values(flag: str, message: str) -> None:
    err = error_of(f"FROM scratch\nHEALTHCHECK {flag} CMD true\n")
    assert isinstance(err, BadFlag)
    assert err.message == message


def test_error_spans_every_line_of_a_continued_instruction() -> None:
    err = error_of("FROM scratch\nCOPY \\\n  --bogus \\\n  a b\n")
    assert isinstance(err, BadFlag)
    assert err.location == SourceLocation("Dockerfile", 2, 4)
    assert err.source_lines == ("COPY \\", "  --bogus \\", "  a b")
    assert str(err) == "Dockerfile:2-4: unknown flag: --bogus"


def test_instruction_before_first_from_has_no_stage() -> None:
    err = error_of("RUN true\nFROM scratch\n")
    assert type(err) is ParseError
    assert err.message == "no build stage in current context"
    assert err.location == SourceLocation("Dockerfile", 1, 1)


# --- unknown instructions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [
        ("RUNN", "did you mean RUN?"),
        ("runn", "did you mean run?"),
        ("COPPY", "did you mean COPY?"),
        ("Entrypont", "did you mean entrypoint?"),
        ("FROBNICATE", ""),
    ],
)
def test_unknown_instruction_names_it_as_written(keyword: str, hint: str) -> None:
    err = error_of(f"FROM scratch\n\n{keyword} something\n")
    assert isinstance(err, UnknownInstruction)
    assert err.message == f"unknown instruction: {keyword}"
    assert err.hint == hint
    assert err.location == SourceLocation("Dockerfile", 3, 3)
    assert err.source_lines == (f"{keyword} something",)


def test_parse_instruction_takes_one_node() -> None:
    tree = parse_dockerfile("FROM scratch\nUSER nobody\n")
    user = parse_instruction(tree.nodes[1], filename="ctx/Dockerfile", lines=tree.lines)
    assert isinstance(user, User)
    assert user.location == SourceLocation("ctx/Dockerfile", 2, 2)


# --- expansion --------------------------------------------------------------------------

ENV = {"HOME": "/root", "USER_ID": "1000", "PORTS": "80 443", "EMPTY": ""}


def expanded(line: str, env: dict[str, str] | None = None) -> Instruction:
    return expand_instruction(last(line + "\n"), ENV if env is None else env, escape="\\")


def test_env_expands_keys_and_values_and_removes_quotes() -> None:
    env = expanded("ENV a=\"b c\" ${USER_ID}_KEY=$HOME 'd'='$HOME'")
    assert isinstance(env, Env)
    assert env.pairs == (
        KeyValue("a", "b c"),
        KeyValue("1000_KEY", "/root"),
        KeyValue("d", "$HOME"),
    )


def test_env_legacy_value_keeps_its_spaces_and_loses_quotes() -> None:
    env = expanded('ENV greeting "hello  world" $HOME')
    assert isinstance(env, Env)
    assert env.pairs == (KeyValue("greeting", "hello  world /root", no_delimiter=True),)


def test_label_quote_removal() -> None:
    label = expanded('LABEL "com.example.owner"="$USER_ID" desc="a \\"quoted\\" word"')
    assert isinstance(label, Label)
    assert label.pairs == (
        KeyValue("com.example.owner", "1000"),
        KeyValue("desc", 'a "quoted" word'),
    )


def test_arg_defaults_expand_and_bare_names_stay_bare() -> None:
    arg = expanded("ARG A=$HOME/x B")
    assert isinstance(arg, Arg)
    assert arg.args == (ArgDefinition("A", "/root/x"), ArgDefinition("B", None))


def test_copy_expands_paths_and_owner_but_not_from_or_excludes() -> None:
    copy = expanded(
        "COPY --from=$STAGE --chown=$USER_ID --chmod=${MODE:-0755} --exclude=$HOME"
        " $HOME/a /dst/$USER_ID/"
    )
    assert isinstance(copy, Copy)
    assert copy.sources == ("/root/a",)
    assert copy.destination == "/dst/1000/"
    assert (copy.chown, copy.chmod) == ("1000", "0755")
    assert copy.from_stage == "$STAGE"
    assert copy.excludes == ("$HOME",)


def test_copy_heredoc_body_expands_only_when_delimiter_unquoted() -> None:
    copy = expanded("COPY <<A <<'B' /dst/\nhome=\"$HOME\"\nA\nhome=$HOME\nB")
    assert isinstance(copy, Copy)
    assert copy.source_contents == (
        SourceContent("A", 'home="/root"\n', expand=True),
        SourceContent("B", "home=$HOME\n", expand=False),
    )


def test_add_expands_checksum() -> None:
    add = expanded("ADD --checksum=sha256:$USER_ID https://example.com/$USER_ID.tgz /x/")
    assert isinstance(add, Add)
    assert add.checksum == "sha256:1000"
    assert add.sources == ("https://example.com/1000.tgz",)


def test_expose_splits_an_expanded_list() -> None:
    expose = expanded("EXPOSE $PORTS 8080/udp")
    assert isinstance(expose, Expose)
    assert expose.ports == ("80", "443", "8080/udp")


def test_volume_user_workdir_stopsignal_expand() -> None:
    volume, user, workdir, signal = (
        expand_instruction(instruction, ENV, escape="\\")
        for instruction in parse(
            "FROM scratch\nVOLUME $HOME/data\nUSER $USER_ID\nWORKDIR $HOME\nSTOPSIGNAL SIG${X:-TERM}\n"
        )[1:]
    )
    assert isinstance(volume, Volume) and volume.volumes == ("/root/data",)
    assert isinstance(user, User) and user.user == "1000"
    assert isinstance(workdir, Workdir) and workdir.path == "/root"
    assert isinstance(signal, StopSignal) and signal.signal == "SIGTERM"


def test_volume_expanding_to_nothing_is_refused() -> None:
    with pytest.raises(ExpansionError) as caught:
        expanded("VOLUME $EMPTY")
    assert caught.value.message == "VOLUME specified can not be an empty string"
    assert caught.value.location == SourceLocation("Dockerfile", 2, 2)


@pytest.mark.parametrize(
    "line",
    [
        "RUN echo $HOME",
        'RUN ["echo", "$HOME"]',
        "CMD echo $HOME",
        'ENTRYPOINT ["$HOME/app"]',
        'SHELL ["$HOME/sh", "-c"]',
        "HEALTHCHECK CMD test -d $HOME",
        "MAINTAINER $USER_ID",
        "ONBUILD RUN echo $HOME",
        "FROM alpine:$USER_ID",
    ],
)
def test_shell_run_and_other_instructions_are_not_expanded(line: str) -> None:
    instruction = last(line + "\n")
    result, unmatched = expand_instruction_with_matches(instruction, ENV, escape="\\")
    assert result == instruction
    assert unmatched == frozenset()


def test_unset_names_are_reported() -> None:
    instruction = last("ENV A=$HOME B=$NOPE C=${ALSO_NOPE:-x}\n")
    result, unmatched = expand_instruction_with_matches(instruction, ENV, escape="\\")
    assert isinstance(result, Env)
    assert [pair.value for pair in result.pairs] == ["/root", "", "x"]
    assert unmatched == frozenset({"NOPE", "ALSO_NOPE"})


def test_expansion_uses_the_escape_directive() -> None:
    tree = parse_dockerfile("# escape=`\nFROM scratch\nWORKDIR C:\\$HOME`$HOME\n")
    workdir = parse_instructions(tree, "Dockerfile")[1]
    result = expand_instruction(workdir, ENV, escape=tree.escape)
    assert isinstance(result, Workdir)
    assert result.path == "C:\\/root$HOME"


def test_expansion_error_carries_the_location() -> None:
    with pytest.raises(ExpansionError) as caught:
        expanded("USER ${NOPE?must be set}")
    assert caught.value.location == SourceLocation("Dockerfile", 2, 2)


def test_expand_from_uses_global_args() -> None:
    (stage,) = parse("FROM --platform=$BUILDPLATFORM ${IMAGE:-alpine}:$TAG AS build\n")
    assert isinstance(stage, From)
    result, unmatched = expand_from(
        stage, {"TAG": "3.19", "BUILDPLATFORM": "linux/amd64"}, escape="\\"
    )
    assert (result.base_name, result.platform, result.stage_name) == (
        "alpine:3.19",
        "linux/amd64",
        "build",
    )
    assert unmatched == frozenset({"IMAGE"})


def test_expand_from_refuses_a_blank_base_name() -> None:
    (stage,) = parse("FROM $NOTHING\n")
    assert isinstance(stage, From)
    with pytest.raises(ExpansionError) as caught:
        expand_from(stage, {}, escape="\\")
    assert caught.value.message == "base name ($NOTHING) should not be blank"
    assert caught.value.location == SourceLocation("Dockerfile", 1, 1)


# --- values are frozen ------------------------------------------------------------------

EVERY_INSTRUCTION = """\
ARG A=1
FROM scratch AS s
RUN true
CMD true
ENTRYPOINT ["x"]
SHELL ["sh", "-c"]
ENV a=b
LABEL a=b
EXPOSE 80
VOLUME /v
USER u
WORKDIR /w
STOPSIGNAL SIGTERM
MAINTAINER m
HEALTHCHECK NONE
ONBUILD RUN true
COPY a b
ADD a b
"""


def test_every_keyword_has_a_class_in_the_sample() -> None:
    kinds = {type(instruction).keyword for instruction in parse(EVERY_INSTRUCTION)}
    assert {kind.lower() for kind in kinds} == instructions.KEYWORDS


@pytest.mark.parametrize(
    "instruction", parse(EVERY_INSTRUCTION), ids=lambda instruction: type(instruction).__name__
)
def test_instructions_are_frozen(instruction: Instruction) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        instruction.original = "changed"  # type: ignore[misc]
    field = dataclasses.fields(instruction)[-1].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instruction, field, None)
    assert not hasattr(instruction, "__dict__")  # slots


# --- helpers ------------------------------------------------------------------------------


def test_public_names_are_exported() -> None:
    for name in instructions.__all__:
        assert hasattr(instructions, name), name


@pytest.mark.parametrize(
    ("first", "second", "distance"),
    [("", "", 0), ("run", "runn", 1), ("copy", "cpoy", 2), ("kitten", "sitting", 3)],
)
def test_levenshtein(first: str, second: str, distance: int) -> None:
    assert levenshtein(first, second) == distance
    assert levenshtein(second, first) == distance


def test_closest_offers_nothing_for_an_exact_name() -> None:
    assert closest("link", ["link", "lnk"], case_sensitive=True) is None
    assert closest("Link", ["link"], case_sensitive=True) == "link"
    assert closest("LINK", ["link"], case_sensitive=False) is None


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("-0", 0),
        ("1h2m3.5s", 3_723_500_000_000),
        ("+.25ms", 250_000),
        ("1.s", SECOND),
        ("5\u00b5s", 5_000),
        ("5\u03bcs", 5_000),
        ("9223372036854775807ns", 2**63 - 1),
        ("-9223372036854775808ns", -(2**63)),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, nanoseconds: int) -> None:
    assert parse_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        (".s", 'time: invalid duration ".s"'),
        ("1h-2m", 'time: unknown unit "h-" in duration "1h-2m"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("3 s", 'time: unknown unit " s" in duration "3 s"'),
        ("1é", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
    ],
)
def test_parse_duration_refuses_like_go(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("\\", "\\\\") + "$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("+7", 7), ("-2147483648", -(2**31)), ("2147483647", 2**31 - 1)]
)
def test_parse_int32(text: str, value: int) -> None:
    assert parse_int32(text) == value


@pytest.mark.parametrize("text", ["2147483648", "-2147483649", "99999999999x"])
def test_parse_int32_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="value out of range"):
        parse_int32(text)
