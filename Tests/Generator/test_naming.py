import pytest

from h2rpc_codegen import naming as n


@pytest.mark.parametrize("snake, camel", [
    ("response_size", "responseSize"), ("r_i32", "rI32"), ("_x__y_", "xY"), ("", "_"),
])
def test_lower_camel(snake, camel):
    assert n.lower_camel(snake) == camel


def test_member_names_avoid_generated_members_and_keywords():
    assert n.member_name("hash_value") == "hashValue_p"
    assert n.member_name("unknown_fields") == "unknownFields_p"
    assert n.quote(n.member_name("default")) == "`default`"


def test_package_prefix_and_output_name():
    assert n.swift_package_prefix("grpc.testing") == "Grpc_Testing_"
    assert n.swift_package_prefix("") == ""
    assert n.output_name("a/b-c/d.proto") == "a_b_c_d.pb.swift"


def test_protoc_c_names():
    assert n.c_type_name("h2rpc.fixture.Envelope.Header") == "H2rpc__Fixture__Envelope__Header"
    assert n.c_func_prefix("grpc.testing.SimpleRequest") == "grpc__testing__simple_request"
    assert n.c_func_prefix("labgallery.v1.OsType") == "labgallery__v1__os_type"
    assert n.c_field_name("Delete") == "delete_"
    assert n.c_field_name("default") == "default_"
    assert n.c_field_name("in") == "`in`"


@pytest.mark.parametrize("enum, value, case", [
    ("OsType", "OS_TYPE_UNSPECIFIED", "unspecified"),
    ("Color", "BLUE", "blue"),
    ("Kind", "KIND_COMPLEX_THING", "complexThing"),
    ("GrpclbRouteType", "GRPCLB_ROUTE_TYPE_BACKEND", "backend"),
    ("Code", "CODE_1X", "code1x"),          # a digit would lead: prefix kept
    ("Word", "WORD_DEFAULT", "`default`"),  # keyword quoted
])
def test_enum_case_names(enum, value, case):
    assert n.enum_case_name(enum, value) == case


def test_method_name():
    assert n.method_name("UnaryCall") == "unaryCall"
    assert n.method_name("Echo") == "echo"
