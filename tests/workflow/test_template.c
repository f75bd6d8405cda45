/*
 * sw_template_render: exact expressions keep their JSON type, everything
 * else interpolates; paths with keys and indexes; errors name the key
 * path and the expression; the result shares nothing with ctx.
 */
#include "wf_test.h"

static json_t *ctx;

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

	SW_CHECKF(j != NULL, "bad test JSON %s: %s", text, e.text);
	return j;
}

/* Render with (JSON text) and compare with want (JSON text). */
static void expect_at(int line, const char *with, const char *want)
{
	char err[512];
	json_t *w = J(with), *x = J(want), *got = sw_template_render(w, ctx, err, sizeof(err));
	char *s;

	if (got == NULL) {
		fprintf(stderr, "line %d: render failed: %s\n", line, err);
		exit(1);
	}
	if (!json_equal(got, x)) {
		s = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
		fprintf(stderr, "line %d: got %s want %s\n", line, s, want);
		exit(1);
	}
	json_decref(w);
	json_decref(x);
	json_decref(got);
}
#define expect(w, x) expect_at(__LINE__, w, x)

static void expect_fail_at(int line, const char *with, const char *msg)
{
	char err[512];
	json_t *w = J(with), *got = sw_template_render(w, ctx, err, sizeof(err));

	if (got != NULL) {
		fprintf(stderr, "line %d: rendered, expected \"%s\"\n", line, msg);
		exit(1);
	}
	if (strcmp(err, msg) != 0) {
		fprintf(stderr, "line %d: got \"%s\"\n  want \"%s\"\n", line, err, msg);
		exit(1);
	}
	json_decref(w);
}
#define expect_fail(w, m) expect_fail_at(__LINE__, w, m)

int main(void)
{
	char err[512];
	json_t *w, *got, *big;

	ctx = J("{\"input\": {\"brief\": \"a bakery\", \"n\": 5, \"pi\": 3.5, \"ok\": true,"
		"  \"none\": null, \"items\": [{\"name\": \"x\"}, {\"name\": \"y\", \"tags\": "
		"[\"t1\", "
		"\"t2\"]}], \"grid\": [[1, 2], [3, 4]], \"obj\": {\"a\": 1, \"b\": [1, 2]},"
		"  \"my-key\": \"dash\", \"uni\": \"caf\\u00e9 \\u2603\"},"
		" \"steps\": {\"plan\": {\"output\": {\"title\": \"Home\", \"sections\": [\"a\", "
		"\"b\"],"
		"  \"tone\": \"warm\"}}, \"count\": {\"output\": 3}, \"text\": {\"output\": "
		"\"hi\"}}}");

	/* exact expressions keep the JSON type */
	expect("{\"v\": \"${{ input.n }}\"}", "{\"v\": 5}");
	expect("{\"v\": \"${{ input.pi }}\"}", "{\"v\": 3.5}");
	expect("{\"v\": \"${{ input.ok }}\"}", "{\"v\": true}");
	expect("{\"v\": \"${{ input.none }}\"}", "{\"v\": null}");
	expect("{\"v\": \"${{ input.obj }}\"}", "{\"v\": {\"a\": 1, \"b\": [1, 2]}}");
	expect("{\"v\": \"${{ steps.plan.output }}\"}",
	       "{\"v\": {\"title\": \"Home\", \"sections\": [\"a\", \"b\"], \"tone\": \"warm\"}}");
	expect("{\"v\": \"${{ steps.plan.output.sections }}\"}", "{\"v\": [\"a\", \"b\"]}");
	expect("{\"v\": \"${{ steps.count.output }}\"}", "{\"v\": 3}");
	expect("{\"v\": \"${{input.n}}\"}", "{\"v\": 5}");
	expect("{\"v\": \"${{ \\t input.n  }}\"}", "{\"v\": 5}");
	expect(
	    "{\"v\": \"${{ input }}\"}",
	    "{\"v\": {\"brief\": \"a bakery\", "
	    "\"n\": 5, \"pi\": 3.5, \"ok\": true, \"none\": null, \"items\": [{\"name\": \"x\"}, "
	    "{\"name\": \"y\", \"tags\": [\"t1\", \"t2\"]}], \"grid\": [[1, 2], [3, 4]], "
	    "\"obj\": {\"a\": 1, \"b\": [1, 2]}, \"my-key\": \"dash\", "
	    "\"uni\": \"caf\\u00e9 \\u2603\"}}");

	/* interpolation: strings bare, the rest as compact JSON */
	expect("{\"p\": \"Brief: ${{ input.brief }}.\"}", "{\"p\": \"Brief: a bakery.\"}");
	expect("{\"p\": \"n=${{ input.n }} pi=${{ input.pi }} ok=${{ input.ok }} "
	       "none=${{ input.none }}\"}",
	       "{\"p\": \"n=5 pi=3.5 ok=true none=null\"}");
	expect("{\"p\": \"obj=${{ input.obj }}\"}",
	       "{\"p\": \"obj={\\\"a\\\":1,\\\"b\\\":[1,2]}\"}");
	expect("{\"p\": \"${{ steps.plan.output.title }}${{ steps.text.output }}\"}",
	       "{\"p\": \"Homehi\"}");
	expect("{\"p\": \" ${{ input.n }}\"}", "{\"p\": \" 5\"}");
	expect("{\"p\": \"${{ input.uni }}!\"}", "{\"p\": \"caf\\u00e9 \\u2603!\"}");
	expect("{\"p\": \"${{ input.my-key }}\"}", "{\"p\": \"dash\"}");
	expect("{\"p\": \"no templates $ { } }} ${ {\"}",
	       "{\"p\": \"no templates $ { } }} ${ {\"}");
	expect("{\"p\": \"\"}", "{\"p\": \"\"}");

	/* arrays and index paths */
	expect("{\"v\": \"${{ input.items[1].name }}\"}", "{\"v\": \"y\"}");
	expect("{\"v\": \"${{ input.items[1].tags[0] }}\"}", "{\"v\": \"t1\"}");
	expect("{\"v\": \"${{ input.grid[1][0] }}\"}", "{\"v\": 3}");
	expect("{\"v\": \"${{ input.items[0] }}\"}", "{\"v\": {\"name\": \"x\"}}");
	expect("{\"v\": \"${{ steps.plan.output.sections[1] }}\"}", "{\"v\": \"b\"}");

	/* nested with:, keys untouched, non-strings copied */
	expect(
	    "{\"url\": \"https://x/${{ input.n }}\", \"body\": {\"items\": [\"${{ input.n }}\", "
	    "{\"deep\": \"${{ input.brief }}\"}, 7, false, null], \"${{ input.n }}\": 1}}",
	    "{\"url\": \"https://x/5\", \"body\": {\"items\": [5, {\"deep\": \"a bakery\"}, 7, "
	    "false, null], \"${{ input.n }}\": 1}}");
	expect("{}", "{}");
	expect("[\"${{ input.n }}\", 1]", "[5, 1]");

	/* errors name the key path and the expression */
	expect_fail("{\"prompt\": \"${{ input.nope }}\"}",
		    "with.prompt: ${{ input.nope }}: input.nope: no such key");
	expect_fail("{\"body\": {\"items\": [1, {\"x\": \"a ${{ input.items[5].name }}\"}]}}",
		    "with.body.items[1].x: ${{ input.items[5].name }}: input.items[5]: index out "
		    "of range (2 items)");
	expect_fail("{\"v\": \"${{ input.n.x }}\"}",
		    "with.v: ${{ input.n.x }}: input.n is not an object");
	expect_fail("{\"v\": \"${{ input.obj[0] }}\"}",
		    "with.v: ${{ input.obj[0] }}: input.obj is not an array");
	expect_fail("{\"v\": \"${{ steps.later.output }}\"}",
		    "with.v: ${{ steps.later.output }}: steps.later: no such key");
	expect_fail(
	    "{\"v\": \"${{ steps.plan.output.missing }}\"}",
	    "with.v: ${{ steps.plan.output.missing }}: steps.plan.output.missing: no such key");
	expect_fail("{\"v\": \"${{ env.HOME }}\"}",
		    "with.v: ${{ env.HOME }}: unknown root \"env\" (expected input or steps)");
	expect_fail("{\"v\": \"x ${{ input.n\"}",
		    "with.v: unterminated \"${{\" in \"${{ input.n\"");
	expect_fail("{\"v\": \"${{ input.n }} ${{ }}\"}", "with.v: ${{ }}: empty expression");
	expect_fail("{\"v\": \"${{ input.a b }}\"}",
		    "with.v: ${{ input.a b }}: bad path at \" b\" (expected .key or [index])");
	expect_fail("{\"v\": \"${{ steps.plan }}\"}",
		    "with.v: ${{ steps.plan }}: expected steps.NAME.output");
	expect_fail("[0, [\"${{ input.zz }}\"]]",
		    "with[1][0]: ${{ input.zz }}: input.zz: no such key");

	/* the result shares nothing with ctx */
	w = J("{\"v\": \"${{ input.obj }}\"}");
	got = sw_template_render(w, ctx, err, sizeof(err));
	SW_CHECKF(got != NULL, "%s", err);
	json_object_set_new(json_object_get(got, "v"), "a", json_integer(99));
	SW_CHECK(json_integer_value(json_object_get(
		     json_object_get(json_object_get(ctx, "input"), "obj"), "a")) == 1);
	json_decref(got);
	json_decref(w);

	/* the size of a result is bounded: 80 references to a 1 MiB string */
	{
		char *s = malloc((1u << 20) + 1);
		json_t *arr = json_array();

		SW_CHECK(s != NULL && arr != NULL);
		memset(s, 'x', 1u << 20);
		s[1u << 20] = '\0';
		big = json_pack("{s:{s:s}}", "input", "big", s);
		free(s);
		for (int i = 0; i < 80; i++)
			json_array_append_new(arr, json_string("${{ input.big }}"));
		got = sw_template_render(arr, big, err, sizeof(err));
		SW_CHECK(got == NULL);
		SW_CHECKF(strstr(err, "rendered inputs would exceed 64 MiB") != NULL, "%s", err);
		/* the same in one interpolated string */
		json_array_clear(arr);
		{
			char t[81 * 18 + 1] = "";

			for (int i = 0; i < 80; i++)
				strcat(t, "${{ input.big }} ");
			json_array_append_new(arr, json_string(t));
		}
		got = sw_template_render(arr, big, err, sizeof(err));
		SW_CHECK(got == NULL && strstr(err, "exceed") != NULL);
		/* but 10 are fine */
		json_array_clear(arr);
		for (int i = 0; i < 10; i++)
			json_array_append_new(arr, json_string("${{ input.big }}"));
		got = sw_template_render(arr, big, err, sizeof(err));
		SW_CHECKF(got != NULL, "%s", err);
		SW_CHECK(json_string_length(json_array_get(got, 9)) == 1u << 20);
		json_decref(got);
		json_decref(arr);
		json_decref(big);
	}

	/* no inputs, no context */
	SW_CHECK(sw_template_render(NULL, ctx, err, sizeof(err)) == NULL);
	w = J("{\"v\": \"${{ input.n }}\", \"k\": 1}");
	SW_CHECK(sw_template_render(w, NULL, err, sizeof(err)) == NULL);
	SW_CHECKF(!strcmp(err, "with.v: ${{ input.n }}: input: no such key"), "%s", err);
	json_decref(w);
	w = J("{\"k\": 1}");
	got = sw_template_render(w, NULL, NULL, 0);
	SW_CHECK(got != NULL && json_equal(got, w));
	json_decref(got);
	json_decref(w);

	json_decref(ctx);
	printf("workflow_template: ok\n");
	return 0;
}
