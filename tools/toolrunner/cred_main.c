/* sagewai-cred on its own (the tool runner's binary is the same client). */
#include "runner.h"

int main(int argc, char **argv)
{
	return cred_main(argc, argv);
}
